// SPDX-License-Identifier: Apache-2.0
#include "config/keys.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <optional>

#include "base/unique_fd.hpp"
#include "config/parse_util.hpp"

namespace sp::config {

namespace {

constexpr size_t kSecretBytes = 32;
// The system user the systemd units run the daemons as (User=sallyport).
constexpr const char* kServiceUser = "sallyport";
constexpr size_t kMaxKeyFileBytes = size_t{1} << 20;
constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int decode_char(char c) noexcept {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

bool is_space(char c) noexcept {
    return c == ' ' || c == '\t';
}

/// Wipes a buffer that held secrets; explicit_bzero is not optimised away.
class Wipe final {
public:
    explicit Wipe(std::string& s) noexcept : s_(s) {}
    ~Wipe() { ::explicit_bzero(s_.data(), s_.size()); }
    Wipe(const Wipe&) = delete;
    Wipe& operator=(const Wipe&) = delete;

private:
    std::string& s_;
};

Unexpected key_error(const std::string& path, int line, size_t column, std::string key,
                     std::string message) {
    return detail::config_error(path, {line, static_cast<int>(column + 1)}, std::move(key),
                                std::move(message));
}

Unexpected file_error(const std::string& path, int code, std::string message) {
    return Unexpected(Error{ErrorKind::Config, code, std::move(message), path, 0, 0, {}});
}

}  // namespace

std::string base64url_encode(const std::vector<uint8_t>& bytes) {
    std::string out;
    out.reserve((bytes.size() * 4 + 2) / 3);
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const uint32_t v =
            (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += kAlphabet[v & 63];
    }
    const size_t rest = bytes.size() - i;
    if (rest == 1) {
        const uint32_t v = uint32_t{bytes[i]} << 16;
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
    } else if (rest == 2) {
        const uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8);
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
    }
    return out;
}

Result<std::vector<uint8_t>> base64url_decode(std::string_view text) {
    // Strict: unpadded base64url only, and the unused low bits of the last
    // character must be zero, so every secret has exactly one spelling.
    // Messages never quote the input: it is usually a secret.
    if (text.size() % 4 == 1) {
        return usage_error("invalid base64url: length {} is impossible", text.size());
    }
    std::vector<uint8_t> out;
    out.reserve(text.size() * 3 / 4);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        const int v = decode_char(text[i]);
        if (v < 0) {
            return usage_error("invalid base64url: bad character at offset {}{}", i,
                               text[i] == '=' ? " (padding is not used)" : "");
        }
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
        }
    }
    if ((acc & ((1U << bits) - 1U)) != 0) {
        return usage_error("invalid base64url: non-zero trailing bits");
    }
    return out;
}

namespace {

/// Parses key lines: each bad line is recorded in `d` and skipped.
std::vector<Key> parse_key_lines(std::string_view text, const std::string& path,
                                 detail::Diagnostics& d) {
    std::vector<Key> keys;
    std::vector<int> lines;
    int line_no = 0;
    size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        size_t p = 0;
        while (p < line.size() && is_space(line[p])) {
            ++p;
        }
        if (p == line.size() || line[p] == '#') {
            continue;
        }
        const size_t id_col = p;
        while (p < line.size() && !is_space(line[p])) {
            ++p;
        }
        const std::string_view id = line.substr(id_col, p - id_col);
        while (p < line.size() && is_space(line[p])) {
            ++p;
        }
        const size_t secret_col = p;
        while (p < line.size() && !is_space(line[p])) {
            ++p;
        }
        const std::string_view secret = line.substr(secret_col, p - secret_col);
        while (p < line.size() && is_space(line[p])) {
            ++p;
        }
        if (!detail::valid_name(id)) {
            d.add(key_error(path, line_no, id_col, {},
                            "invalid key ID (1-64 characters of letters, digits, '-', '_' "
                            "or '.')"));
            continue;
        }
        const std::string key_name(id);
        if (secret.empty()) {
            d.add(key_error(path, line_no, secret_col, key_name,
                            "missing secret (expected \"ID SECRET\")"));
            continue;
        }
        if (p != line.size()) {
            d.add(key_error(path, line_no, p, key_name,
                            "unexpected text after the secret (expected \"ID SECRET\")"));
            continue;
        }
        auto bytes = base64url_decode(secret);
        if (!bytes) {
            d.add(key_error(path, line_no, secret_col, key_name, bytes.error().message));
            continue;
        }
        if (bytes->size() != kSecretBytes) {
            const size_t n = bytes->size();
            ::explicit_bzero(bytes->data(), bytes->size());
            d.add(key_error(path, line_no, secret_col, key_name,
                            fmt::format("secret is {} bytes, expected {} (generate one with "
                                        "sallyport-relay --gen-key {})",
                                        n, kSecretBytes, key_name)));
            continue;
        }
        const auto dup =
            std::find_if(keys.begin(), keys.end(), [&](const Key& k) { return k.id == id; });
        if (dup != keys.end()) {
            ::explicit_bzero(bytes->data(), bytes->size());
            d.add(key_error(path, line_no, id_col, key_name,
                            fmt::format("duplicate key ID (first defined on line {})",
                                        lines[static_cast<size_t>(dup - keys.begin())])));
            continue;
        }
        keys.push_back(Key{key_name, std::move(*bytes)});
        lines.push_back(line_no);
    }
    return keys;
}

void wipe_keys(std::vector<Key>& keys) noexcept {
    for (auto& k : keys) {
        ::explicit_bzero(k.secret.data(), k.secret.size());
    }
}

/// The uid of `name`, if that user exists.
std::optional<uid_t> uid_of(const char* name) {
    passwd pw{};
    passwd* found = nullptr;
    std::array<char, 4096> buf{};
    if (::getpwnam_r(name, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return std::nullopt;
    }
    return pw.pw_uid;
}

/// The user name of `uid`, or the number when it has none.
std::string user_name(uid_t uid) {
    passwd pw{};
    passwd* found = nullptr;
    std::array<char, 4096> buf{};
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return fmt::format("{}", uid);
    }
    return pw.pw_name;
}

// A key file's owner can rewrite it (and chmod it back), so the mode check
// alone would let any user who owns the file plant a key. Allowed: root, the
// user this process runs as, and the service user the units run the daemons
// as (so that root's --check-config accepts a file set up as the docs say).
Result<void> check_owner(const std::string& path, uid_t owner, std::string_view what) {
    const uid_t me = ::geteuid();
    const auto service = uid_of(kServiceUser);
    if (owner == 0 || owner == me || (service && owner == *service)) {
        return {};
    }
    // Name who may own it, and suggest the user the daemon reads it as.
    const std::string allowed =
        me != 0 ? fmt::format("this daemon's user {} (uid {}) or root", user_name(me), me)
                : fmt::format("root or the service user {}", kServiceUser);
    const std::string fix = me != 0 ? user_name(me) : (service ? kServiceUser : "root");
    return file_error(path, 0,
                      fmt::format("{} is owned by {} (uid {}), not by {}: its owner can "
                                  "rewrite it; refusing it, fix with: chown {} {}",
                                  what, user_name(owner), owner, allowed, fix, path));
}

/// Opens and reads a key file into `ret_text` after the checks on the opened
/// fd that load_keys() documents. The caller wipes `ret_text`.
Result<void> read_key_file(const std::string& path, std::string& ret_text,
                           std::string_view what = "key file") {
    // O_NONBLOCK: a FIFO must fail the regular-file check, not hang startup.
    // The checks run on the opened fd, so a rename in between cannot swap in
    // another file after the check.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd) {
        return file_error(path, errno, fmt::format("cannot open {}", what));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return file_error(path, errno, fmt::format("cannot stat {}", what));
    }
    if (!S_ISREG(st.st_mode)) {
        return file_error(path, 0, fmt::format("{} is not a regular file", what));
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        return file_error(path, 0,
                          fmt::format("{} is accessible by group or others (mode {:04o}); "
                                      "refusing it, fix with: chmod 600 {}",
                                      what, st.st_mode & 07777, path));
    }
    if (auto owner = check_owner(path, st.st_uid, what); !owner) {
        return owner;
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxKeyFileBytes) {
        return file_error(path, 0,
                          fmt::format("{} is larger than {} bytes", what, kMaxKeyFileBytes));
    }
    ret_text.reserve(static_cast<size_t>(st.st_size) + 1);
    std::array<char, 4096> buf{};
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            const int e = errno;
            ::explicit_bzero(buf.data(), buf.size());
            return file_error(path, e, fmt::format("cannot read {}", what));
        }
        if (n == 0) {
            break;
        }
        if (ret_text.size() + static_cast<size_t>(n) > kMaxKeyFileBytes) {
            ::explicit_bzero(buf.data(), buf.size());
            return file_error(path, 0,
                              fmt::format("{} is larger than {} bytes", what, kMaxKeyFileBytes));
        }
        ret_text.append(buf.data(), static_cast<size_t>(n));
    }
    ::explicit_bzero(buf.data(), buf.size());
    return {};
}

/// The rules about the whole file, once every line parsed.
Result<void> check_key_count(const std::string& path, size_t count, bool expect_one) {
    if (count == 0) {
        return file_error(path, 0, "key file holds no key (expected lines \"ID SECRET\")");
    }
    if (expect_one && count != 1) {
        return file_error(path, 0,
                          fmt::format("key file holds {} keys; an agent's key file holds "
                                      "exactly one \"ID SECRET\" line",
                                      count));
    }
    return {};
}

}  // namespace

Result<std::vector<Key>> parse_keys(std::string_view text, const std::string& path) {
    detail::Diagnostics d;
    auto keys = parse_key_lines(text, path, d);
    if (!d.empty()) {
        wipe_keys(keys);
        return Unexpected(d.first());
    }
    return keys;
}

Result<std::vector<Key>> load_keys(const std::string& path, bool expect_one) {
    std::string text;
    const Wipe wipe(text);
    SP_CONFIG_TRY(read_key_file(path, text));
    auto keys = parse_keys(text, path);
    if (!keys) {
        return keys;
    }
    if (auto r = check_key_count(path, keys->size(), expect_one); !r) {
        wipe_keys(*keys);
        return Unexpected(r.error());
    }
    return keys;
}

std::vector<Error> check_key_file(const std::string& path, bool expect_one) {
    std::string text;
    const Wipe wipe(text);
    if (auto r = read_key_file(path, text); !r) {
        return {r.error()};
    }
    detail::Diagnostics d;
    auto keys = parse_key_lines(text, path, d);
    wipe_keys(keys);
    if (d.empty()) {
        d.ok(check_key_count(path, keys.size(), expect_one));
    }
    return d.sorted();
}

Result<std::string> generate_key_line(std::string_view id) {
    if (!detail::valid_name(id)) {
        return usage_error(
            "invalid key name \"{}\" (1-64 characters of letters, digits, '-', '_' or '.')",
            id.substr(0, 64));
    }
    std::vector<uint8_t> secret(kSecretBytes);
    size_t got = 0;
    while (got < secret.size()) {
        // getrandom blocks only until the pool is initialised at boot, then
        // never; for 32 bytes it does not return short, but loop anyway.
        const ssize_t n = ::getrandom(secret.data() + got, secret.size() - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno_error("getrandom");
        }
        got += static_cast<size_t>(n);
    }
    std::string line = fmt::format("{} {}\n", id, base64url_encode(secret));
    ::explicit_bzero(secret.data(), secret.size());
    return line;
}

Result<std::string> read_private_file(const std::string& path, std::string_view what) {
    std::string text;
    if (auto r = read_key_file(path, text, what); !r) {
        ::explicit_bzero(text.data(), text.size());
        return Unexpected(r.error());
    }
    return text;
}

std::string file_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace sp::config
