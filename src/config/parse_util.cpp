// SPDX-License-Identifier: Apache-2.0
#include "config/parse_util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "base/unique_fd.hpp"

namespace sp::config::detail {

namespace {

constexpr size_t kMaxConfigBytes = size_t{4} << 20;
// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPath = 107;

std::string_view type_name(const toml::node& n) noexcept {
    switch (n.type()) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a float";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::date:
            return "a date";
        case toml::node_type::time:
            return "a time";
        case toml::node_type::date_time:
            return "a date-time";
        case toml::node_type::none:
            break;
    }
    return "nothing";
}

Unexpected wrong_type(const TableReader& r, const toml::node& n, std::string_view k,
                      std::string_view expected) {
    return r.error(pos_of(n), k, fmt::format("expected {}, got {}", expected, type_name(n)));
}

/// The code point starting at text[i] for messages: "U+00E9", or the raw
/// byte when the UTF-8 is malformed.
std::string describe_char(std::string_view text, size_t i) {
    const auto b = static_cast<unsigned char>(text[i]);
    int len = 0;
    uint32_t cp = 0;
    if ((b & 0xE0U) == 0xC0U) {
        len = 2;
        cp = b & 0x1FU;
    } else if ((b & 0xF0U) == 0xE0U) {
        len = 3;
        cp = b & 0x0FU;
    } else if ((b & 0xF8U) == 0xF0U) {
        len = 4;
        cp = b & 0x07U;
    }
    if (len == 0 || i + static_cast<size_t>(len) > text.size()) {
        return fmt::format("byte 0x{:02X}", b);
    }
    for (int k = 1; k < len; ++k) {
        const auto c = static_cast<unsigned char>(text[i + static_cast<size_t>(k)]);
        if ((c & 0xC0U) != 0x80U) {
            return fmt::format("byte 0x{:02X}", b);
        }
        cp = (cp << 6) | (c & 0x3FU);
    }
    return fmt::format("U+{:04X}", cp);
}

// toml++ 3.3 (Debian 12) reaches __builtin_unreachable() in
// is_non_ascii_horizontal_whitespace() for many non-ASCII code points
// (U+00A1..U+0499 among them) wherever it looks for whitespace: outside
// strings and comments, and after a line-ending backslash in a multi-line
// basic string (marzer/tomlplusplus#190 and #295, fixed upstream by #305).
// That is undefined behaviour on a one-character typo such as `é = 1`, so a
// small lexer finds those places first and reports them itself. Non-ASCII
// text inside strings and comments, where toml++ is fine, stays allowed.
// Outside strings and comments TOML has no valid non-ASCII anyway, so this
// refuses nothing toml++ would accept, except the backslash corner.
Result<void> guard_toml_input(std::string_view text, const std::string& file) {
    enum class State { Normal, Comment, Basic, Literal, MlBasic, MlLiteral };
    constexpr std::string_view kMlBasic = "\"\"\"";
    constexpr std::string_view kMlLiteral = "'''";
    State state = State::Normal;
    bool after_line_ending_backslash = false;
    // The last significant character in Normal state. A quote opens a string
    // only where TOML allows one (a key or a value start); elsewhere, as in
    // `b = 19'''79`, toml++ scans it as part of a bare token and still tests
    // every following character for whitespace, so the lexer stays Normal.
    char prev = '\n';
    int line = 1;
    int column = 1;
    size_t i = 0;
    const auto starts = [&](std::string_view s) { return text.substr(i, s.size()) == s; };
    // Moves over n bytes keeping line and column; columns count code points,
    // so continuation bytes do not move them.
    const auto advance = [&](size_t n) {
        for (size_t k = 0; k < n && i < text.size(); ++k, ++i) {
            const auto b = static_cast<unsigned char>(text[i]);
            if (b == '\n') {
                ++line;
                column = 1;
            } else if ((b & 0xC0U) != 0x80U) {
                ++column;
            }
        }
    };
    // A closing delimiter may be followed by up to two more quotes that
    // belong to the content: """a""""" is the string a"".
    const auto close_ml = [&](char quote) {
        size_t n = 3;
        while (n < 5 && i + n < text.size() && text[i + n] == quote) {
            ++n;
        }
        advance(n);
        state = State::Normal;
        prev = quote;
    };
    const auto string_may_start = [&] {
        return prev == '\n' || prev == '=' || prev == '[' || prev == ',' || prev == '{' ||
               prev == '.';
    };
    while (i < text.size()) {
        const char c = text[i];
        const bool non_ascii = (static_cast<unsigned char>(c) & 0x80U) != 0;
        switch (state) {
            case State::Normal:
                if (non_ascii) {
                    return config_error(file, {line, column}, {},
                                        fmt::format("TOML syntax error: unexpected character {} "
                                                    "(text that is not ASCII must be quoted)",
                                                    describe_char(text, i)));
                }
                if (c == '#') {
                    state = State::Comment;
                } else if ((c == '"' || c == '\'') && string_may_start()) {
                    if (starts(kMlBasic) || starts(kMlLiteral)) {
                        state = c == '"' ? State::MlBasic : State::MlLiteral;
                        advance(3);
                        continue;
                    }
                    state = c == '"' ? State::Basic : State::Literal;
                } else if (c != ' ' && c != '\t' && c != '\r') {
                    prev = c;
                }
                break;
            case State::Comment:
                if (c == '\n') {
                    state = State::Normal;
                    prev = '\n';
                }
                break;
            case State::Basic:
                if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') {
                    advance(2);  // an escape: the next byte cannot end the string
                    continue;
                }
                if (c == '"' || c == '\n') {
                    state = State::Normal;
                    prev = c;
                }
                break;
            case State::Literal:
                if (c == '\'' || c == '\n') {
                    state = State::Normal;
                    prev = c;
                }
                break;
            case State::MlBasic:
                if (after_line_ending_backslash) {
                    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                        break;
                    }
                    after_line_ending_backslash = false;
                    if (non_ascii) {
                        return config_error(
                            file, {line, column}, {},
                            fmt::format("unsupported character {} right after a line-ending "
                                        "backslash (move it before the backslash)",
                                        describe_char(text, i)));
                    }
                }
                if (c == '\\') {
                    size_t j = i + 1;
                    while (j < text.size() &&
                           (text[j] == ' ' || text[j] == '\t' || text[j] == '\r')) {
                        ++j;
                    }
                    if (j < text.size() && text[j] == '\n') {
                        after_line_ending_backslash = true;
                    } else {
                        advance(2);
                        continue;
                    }
                } else if (starts(kMlBasic)) {
                    close_ml('"');
                    continue;
                }
                break;
            case State::MlLiteral:
                if (starts(kMlLiteral)) {
                    close_ml('\'');
                    continue;
                }
                break;
        }
        advance(1);
    }
    return {};
}

/// Length of the well-formed UTF-8 sequence at text[i] (RFC 3629: no
/// overlong forms, no surrogates, at most U+10FFFF), or 0.
size_t utf8_length(std::string_view text, size_t i) noexcept {
    const auto at = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
    const size_t left = text.size() - i;
    const unsigned char b = at(0);
    if (b < 0x80U) {
        return 1;
    }
    const auto cont = [&](size_t k, unsigned lo, unsigned hi) {
        return k < left && at(k) >= lo && at(k) <= hi;
    };
    if (b >= 0xC2U && b <= 0xDFU) {
        return cont(1, 0x80, 0xBF) ? 2 : 0;
    }
    if (b >= 0xE0U && b <= 0xEFU) {
        const unsigned lo = b == 0xE0U ? 0xA0U : 0x80U;
        const unsigned hi = b == 0xEDU ? 0x9FU : 0xBFU;
        return cont(1, lo, hi) && cont(2, 0x80, 0xBF) ? 3 : 0;
    }
    if (b >= 0xF0U && b <= 0xF4U) {
        const unsigned lo = b == 0xF0U ? 0x90U : 0x80U;
        const unsigned hi = b == 0xF4U ? 0x8FU : 0xBFU;
        return cont(1, lo, hi) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    }
    return 0;
}

/// Checks the text is UTF-8 and, when it holds any non-ASCII, returns a copy
/// with each non-ASCII code point replaced by '~' (same lines and columns).
/// '~' is valid TOML only inside strings and comments, so the copy parses
/// exactly when the original's structure is valid with all non-ASCII text
/// inside strings and comments, and toml++ never meets a non-ASCII character
/// while parsing it. nullopt when the text is pure ASCII.
Result<std::optional<std::string>> ascii_shadow(std::string_view text, const std::string& file) {
    std::optional<std::string> shadow;
    int line = 1;
    int column = 1;
    for (size_t i = 0; i < text.size();) {
        const size_t n = utf8_length(text, i);
        if (n == 0) {
            return config_error(
                file, {line, column}, {},
                fmt::format("invalid UTF-8 (byte 0x{:02X})", static_cast<unsigned char>(text[i])));
        }
        if (n > 1 && !shadow) {
            shadow.emplace(text.substr(0, i));
        }
        if (shadow) {
            shadow->push_back(n > 1 ? '~' : text[i]);
        }
        if (text[i] == '\n') {
            ++line;
            column = 1;
        } else {
            ++column;
        }
        i += n;
    }
    return shadow;
}

Result<toml::table> toml_parse(std::string_view text, const std::string& file) {
    toml::parse_result res = toml::parse(text, std::string_view(file));
    if (!res) {
        const toml::parse_error& e = res.error();
        return config_error(file, pos_of(e.source()), {},
                            fmt::format("TOML syntax error: {}", e.description()));
    }
    return std::move(res.table());
}

}  // namespace

Pos pos_of(const toml::source_region& r) noexcept {
    if (r.begin.line == 0) {
        return {};
    }
    const auto clamp = [](toml::source_index v) {
        return static_cast<int>(std::min<toml::source_index>(v, std::numeric_limits<int>::max()));
    };
    return {clamp(r.begin.line), std::max(1, clamp(r.begin.column))};
}

void Diagnostics::add(Error e) {
    if (errors_.size() < kMaxErrors) {
        errors_.push_back(std::move(e));
    } else {
        ++dropped_;
    }
}

bool Diagnostics::meant(std::string_view key_path) const noexcept {
    // "a" relates to "a", "a.b" and "a[0]"; "a.b" also to its table "a".
    const auto within = [](std::string_view outer, std::string_view inner) {
        return inner.starts_with(outer) &&
               (inner.size() == outer.size() || inner[outer.size()] == '.' ||
                inner[outer.size()] == '[');
    };
    return std::any_of(meant_.begin(), meant_.end(), [&](const std::string& m) {
        return within(m, key_path) || within(key_path, m);
    });
}

std::vector<Error> Diagnostics::sorted() const {
    std::vector<Error> out = errors_;
    std::stable_sort(out.begin(), out.end(), [](const Error& a, const Error& b) {
        return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    if (dropped_ > 0) {
        out.push_back(Error{ErrorKind::Config,
                            0,
                            fmt::format("{} more errors not shown", dropped_),
                            out.back().file,
                            0,
                            0,
                            {}});
    }
    return out;
}

Error Diagnostics::first() const {
    const auto it =
        std::min_element(errors_.begin(), errors_.end(), [](const Error& a, const Error& b) {
            return std::pair(a.line, a.column) < std::pair(b.line, b.column);
        });
    Error e = *it;
    if (count() > 1) {
        e.message += fmt::format(" (and {} more error{} in this file; --check-config lists all)",
                                 count() - 1, count() == 2 ? "" : "s");
    }
    return e;
}

Unexpected config_error(const std::string& file, Pos pos, std::string key, std::string message) {
    return Unexpected(Error{ErrorKind::Config, 0, std::move(message), file, pos.line, pos.column,
                            std::move(key)});
}

std::string join_key(std::string_view parent, std::string_view key) {
    if (parent.empty()) {
        return std::string(key);
    }
    return fmt::format("{}.{}", parent, key);
}

std::string index_key(std::string_view parent, size_t index) {
    return fmt::format("{}[{}]", parent, index);
}

size_t edit_distance(std::string_view a, std::string_view b) {
    // Keys are short; a full (n+1)x(m+1) table is simpler than rolling rows
    // once transpositions need the row before last.
    const size_t n = a.size();
    const size_t m = b.size();
    std::vector<size_t> d((n + 1) * (m + 1));
    const auto at = [m](size_t i, size_t j) { return i * (m + 1) + j; };
    for (size_t i = 0; i <= n; ++i) {
        d[at(i, 0)] = i;
    }
    for (size_t j = 0; j <= m; ++j) {
        d[at(0, j)] = j;
    }
    for (size_t i = 1; i <= n; ++i) {
        for (size_t j = 1; j <= m; ++j) {
            const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v =
                std::min({d[at(i - 1, j)] + 1, d[at(i, j - 1)] + 1, d[at(i - 1, j - 1)] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
                v = std::min(v, d[at(i - 2, j - 2)] + 1);
            }
            d[at(i, j)] = v;
        }
    }
    return d[at(n, m)];
}

std::optional<std::string_view> suggest_key(std::string_view unknown,
                                            std::span<const std::string_view> allowed) {
    // Hostile input can be long; nobody mistypes a 200-character key.
    if (unknown.empty() || unknown.size() > 128) {
        return std::nullopt;
    }
    std::optional<std::string_view> best;
    size_t best_distance = 3;
    for (const auto candidate : allowed) {
        const size_t dist = edit_distance(unknown, candidate);
        if (dist < best_distance) {
            best = candidate;
            best_distance = dist;
        }
    }
    if (best) {
        return best;
    }
    // "pending_timeout" for "pending_timeout_ms": a missing unit suffix is
    // more than two edits away but obviously meant.
    for (const auto candidate : allowed) {
        const auto shorter = std::min(unknown.size(), candidate.size());
        if (shorter >= 3 && (candidate.starts_with(unknown) || unknown.starts_with(candidate))) {
            return candidate;
        }
    }
    return std::nullopt;
}

TableReader::TableReader(const std::string& file, const toml::table& table, std::string path,
                         std::span<const SchemaTable> schema)
    : file_(file), table_(table), path_(std::move(path)), schema_(schema) {}

Unexpected TableReader::error(Pos p, std::string_view k, std::string message) const {
    return config_error(file_, p, k.empty() ? path_ : key(k), std::move(message));
}

Unexpected TableReader::missing(std::string_view k, std::string message) const {
    return error(pos(), k, std::move(message));
}

bool TableReader::check_keys(std::span<const std::string_view> allowed, Diagnostics& d) const {
    bool clean = true;
    for (auto&& [k, v] : table_) {
        const std::string_view name = k.str();
        if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) {
            continue;
        }
        std::string hint;
        if (const auto s = suggest_key(name, allowed)) {
            hint = fmt::format(" (did you mean \"{}\"?)", *s);
            d.note_meant(key(*s));
        } else {
            for (const auto& t : schema_) {
                if (t.name != path_ &&
                    std::find(t.keys.begin(), t.keys.end(), name) != t.keys.end()) {
                    hint = t.array
                               ? fmt::format(" (\"{}\" belongs in a [[{}]] block)", name, t.name)
                               : fmt::format(" (\"{}\" belongs in [{}])", name, t.name);
                    d.note_meant(std::string(t.name));
                    break;
                }
            }
        }
        // The key text is user input: quote it, and cut it so a fuzzed
        // megabyte key does not become a megabyte message.
        const std::string_view shown = name.substr(0, 64);
        d.add(error(pos_of(k.source()), name.substr(0, 64),
                    fmt::format("unknown key \"{}\"{}{}", shown,
                                name.size() > shown.size() ? "..." : "", hint)));
        clean = false;
    }
    return clean;
}

Result<void> TableReader::read_uint(std::string_view k, uint32_t min, uint32_t max,
                                    uint32_t& ret_value) const {
    const toml::node* n = table_.get(k);
    if (n == nullptr) {
        return {};
    }
    const auto* v = n->as_integer();
    if (v == nullptr) {
        return wrong_type(*this, *n, k, "an integer");
    }
    const int64_t x = v->get();
    if (x < static_cast<int64_t>(min) || x > static_cast<int64_t>(max)) {
        return error(pos_of(*n), k, fmt::format("{} is out of range ({}-{})", x, min, max));
    }
    ret_value = static_cast<uint32_t>(x);
    return {};
}

Result<void> TableReader::read_bool(std::string_view k, bool& ret_value) const {
    const toml::node* n = table_.get(k);
    if (n == nullptr) {
        return {};
    }
    const auto* v = n->as_boolean();
    if (v == nullptr) {
        return wrong_type(*this, *n, k, "a boolean (true or false)");
    }
    ret_value = v->get();
    return {};
}

Result<std::optional<StringItem>> TableReader::string_item(std::string_view k) const {
    const toml::node* n = table_.get(k);
    if (n == nullptr) {
        return std::optional<StringItem>{};
    }
    const auto* v = n->as_string();
    if (v == nullptr) {
        return wrong_type(*this, *n, k, "a string");
    }
    return std::optional<StringItem>{StringItem{v->get(), pos_of(*n), key(k)}};
}

Result<void> TableReader::read_string(std::string_view k, std::string& ret_value) const {
    auto item = string_item(k);
    if (!item) {
        return Unexpected(std::move(item.error()));
    }
    if (*item) {
        ret_value = std::move((*item)->value);
    }
    return {};
}

Result<void> TableReader::read_path(std::string_view k, std::string& ret_value) const {
    auto item = string_item(k);
    if (!item) {
        return Unexpected(std::move(item.error()));
    }
    if (!*item) {
        return {};
    }
    // open(2) would silently stop at an embedded NUL and read another file.
    if ((*item)->value.find('\0') != std::string::npos) {
        return error((*item)->pos, k, "file name contains a NUL byte");
    }
    ret_value = resolve_path(file_, (*item)->value);
    return {};
}

Result<std::optional<std::vector<StringItem>>> TableReader::strings(std::string_view k) const {
    using Out = std::optional<std::vector<StringItem>>;
    const toml::node* n = table_.get(k);
    if (n == nullptr) {
        return Out{};
    }
    const auto* arr = n->as_array();
    if (arr == nullptr) {
        return wrong_type(*this, *n, k, "an array of strings");
    }
    std::vector<StringItem> out;
    out.reserve(arr->size());
    const std::string base = key(k);
    for (size_t i = 0; i < arr->size(); ++i) {
        const toml::node& e = *arr->get(i);
        const auto* s = e.as_string();
        if (s == nullptr) {
            return config_error(file_, pos_of(e), index_key(base, i),
                                fmt::format("expected a string, got {}", type_name(e)));
        }
        out.push_back(StringItem{s->get(), pos_of(e), index_key(base, i)});
    }
    return Out{std::move(out)};
}

Result<const toml::table*> TableReader::sub_table(std::string_view k) const {
    const toml::node* n = table_.get(k);
    if (n == nullptr) {
        return static_cast<const toml::table*>(nullptr);
    }
    const auto* t = n->as_table();
    if (t == nullptr) {
        return wrong_type(*this, *n, k, fmt::format("a table ([{}])", key(k)));
    }
    return t;
}

Result<const toml::array*> TableReader::table_array(std::string_view k) const {
    const toml::node* n = table_.get(k);
    if (n == nullptr) {
        return static_cast<const toml::array*>(nullptr);
    }
    const auto* arr = n->as_array();
    if (arr == nullptr || !arr->is_array_of_tables()) {
        return wrong_type(*this, *n, k,
                          fmt::format("an array of tables (one [[{}]] block each)", key(k)));
    }
    return arr;
}

Result<toml::table> parse_document(std::string_view text, const std::string& file) {
    // Three steps keep toml++ 3.3's Unicode bug (see guard_toml_input) out of
    // reach: a strict UTF-8 check; a parse of an ASCII copy, which settles
    // the document's structure without toml++ seeing any non-ASCII (its
    // errors are the user's errors, at the same positions); then the lexer,
    // exact on a structurally valid document, for the remaining corner and
    // for readable messages. Only then is the real text parsed.
    auto shadow = ascii_shadow(text, file);
    SP_CONFIG_TRY(shadow);
    if (*shadow) {
        SP_CONFIG_TRY(guard_toml_input(text, file));
        SP_CONFIG_TRY(toml_parse(**shadow, file));
    }
    return toml_parse(text, file);
}

Result<std::string> read_config_file(const std::string& path) {
    // O_NONBLOCK so a FIFO given by mistake fails the regular-file check below
    // instead of blocking startup until someone writes to it.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd) {
        return Unexpected(
            Error{ErrorKind::Config, errno, "cannot open configuration file", path, 0, 0, {}});
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return Unexpected(Error{ErrorKind::Config, errno, "cannot stat", path, 0, 0, {}});
    }
    if (!S_ISREG(st.st_mode)) {
        return Unexpected(Error{
            ErrorKind::Config, 0, "configuration file is not a regular file", path, 0, 0, {}});
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
        return Unexpected(
            Error{ErrorKind::Config,
                  0,
                  fmt::format("configuration file is larger than {} bytes", kMaxConfigBytes),
                  path,
                  0,
                  0,
                  {}});
    }
    std::string text;
    char buf[8192];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return Unexpected(Error{ErrorKind::Config, errno, "cannot read", path, 0, 0, {}});
        }
        if (n == 0) {
            break;
        }
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > kMaxConfigBytes) {
            return Unexpected(
                Error{ErrorKind::Config,
                      0,
                      fmt::format("configuration file is larger than {} bytes", kMaxConfigBytes),
                      path,
                      0,
                      0,
                      {}});
        }
    }
    return text;
}

Unexpected bad_enum(const TableReader& r, const StringItem& item, std::string_view k,
                    std::string_view accepted) {
    return r.error(
        item.pos, k,
        fmt::format("invalid value \"{}\" (expected {})", item.value.substr(0, 64), accepted));
}

Result<void> read_data_path(const TableReader& r, DataPath& ret_value) {
    auto item = r.string_item("data_path");
    if (!item) {
        return Unexpected(std::move(item.error()));
    }
    if (!*item) {
        return {};
    }
    const auto p = parse_data_path((*item)->value);
    if (!p) {
        return bad_enum(r, **item, "data_path", "\"splice\" or \"copy\"");
    }
    ret_value = *p;
    return {};
}

std::string resolve_path(const std::string& config_file, const std::string& value) {
    if (value.empty() || value.front() == '/') {
        return value;
    }
    const auto slash = config_file.rfind('/');
    if (slash == std::string::npos) {
        return value;
    }
    return config_file.substr(0, slash + 1) + value;
}

Result<void> check_socket_path(const TableReader& r, const StringItem& item, std::string_view k) {
    if (item.value.empty() || item.value.front() != '/') {
        return r.error(item.pos, k, "must be an absolute path");
    }
    if (item.value.size() > kMaxSocketPath) {
        return r.error(item.pos, k,
                       fmt::format("path is longer than {} bytes (the limit of a unix "
                                   "socket address)",
                                   kMaxSocketPath));
    }
    if (item.value.find('\0') != std::string::npos) {
        return r.error(item.pos, k, "path contains a NUL byte");
    }
    return {};
}

Unexpected relocate(const TableReader& r, const StringItem& item, Error e) {
    return config_error(r.file(), item.pos, item.key, std::move(e.message));
}

std::vector<Cidr> parse_cidrs(const TableReader& r, const std::vector<StringItem>& items,
                              Diagnostics& d) {
    std::vector<Cidr> out;
    out.reserve(items.size());
    for (const auto& item : items) {
        auto c = Cidr::parse(item.value);
        if (!c) {
            d.add(relocate(r, item, std::move(c.error())));
            continue;
        }
        out.push_back(*c);
    }
    return out;
}

bool valid_name(std::string_view s) noexcept {
    if (s.empty() || s.size() > 64) {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
    });
}

}  // namespace sp::config::detail
