# Sourced by scripts/*: installs the Debian packages sallyport needs when any
# is missing. Needs root (or sudo) only when something is missing.
sp_build_packages=(meson ninja-build pkg-config g++ clang lld libclang-rt-14-dev clang-format
    clang-tidy liburing-dev libsystemd-dev libfmt-dev libtomlplusplus-dev doctest-dev libssl-dev
    libexpected-dev scdoc mandoc man-db groff-base python3 openssl iproute2 procps
    nlohmann-json3-dev libmicrohttpd-dev prometheus)

sp_ensure_packages() {
    local missing=()
    local p
    for p in "${sp_build_packages[@]}" "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    echo "installing: ${missing[*]}" >&2
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    local log
    log=$(mktemp)
    if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "apt-get failed: cannot install ${missing[*]}" >&2
        return 1
    fi
    rm -f "$log"
}
