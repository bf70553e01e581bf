# shellcheck shell=bash
# Sourced by scripts/*: sets up a meson build directory with exactly the
# options a script asks for. The project's defaults are for packagers (no
# werror, see meson.build); CI passes its own options here, and an existing
# directory configured differently (by hand, or by an older script) is
# re-configured instead of silently building with the wrong flags.

# sp_meson_setup BUILDDIR CXX [--buildtype=T] [-Dname=value ...]
# Creates BUILDDIR with CXX, or brings an existing one to the given options:
# `meson setup --reconfigure` when an option differs, `--wipe` when the
# compiler differs (meson cannot change compilers in place). Output goes to
# BUILDDIR.setup.log, shown only on failure. Returns meson's status.
sp_meson_setup() {
    local dir=$1 cxx=$2
    shift 2
    local log="$dir.setup.log" mode=()
    if [ -f "$dir/build.ninja" ]; then
        local current
        current=$(grep -A1 '^rule cpp_COMPILER$' "$dir/build.ninja" | sed -n 's/^ command = \([^ ]*\).*/\1/p')
        if [ "$current" != "$cxx" ]; then
            echo "$dir: compiler $current, want $cxx: wiping" >&2
            mode=(--wipe)
        elif ! sp_meson_options_match "$dir" "$@"; then
            echo "$dir: options differ: reconfiguring" >&2
            mode=(--reconfigure)
        else
            return 0
        fi
    elif [ -e "$dir" ]; then
        # A directory without build.ninja is a failed setup: start over.
        rm -rf "$dir"
    fi
    if ! CXX=$cxx meson setup "${mode[@]}" "$dir" "$@" >"$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
}

# sp_meson_options_match BUILDDIR [--buildtype=T] [-Dname=value ...]
# True when every given option has that value in BUILDDIR (meson introspect).
sp_meson_options_match() {
    local dir=$1
    shift
    meson introspect --buildoptions "$dir" 2>/dev/null | python3 -c '
import json, sys
have = {o["name"]: o["value"] for o in json.load(sys.stdin)}
def norm(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)
for arg in sys.argv[1:]:
    name, _, value = arg.lstrip("-").removeprefix("D").partition("=")
    if name not in have or norm(have[name]) != value:
        sys.exit(1)
' "$@"
}
