// SPDX-License-Identifier: Apache-2.0
// Internal to sp_config: typed, position-aware reads over a toml++ table, so
// relay.toml and agent.toml parsers state their schema and nothing else.
// Every failure is an ErrorKind::Config error naming FILE:LINE:COL and a key.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "config/common.hpp"
#include "config/toml_include.hpp"

/// Returns the error of a Result<...> expression from the enclosing function,
/// which must itself return a Result.
#define SP_CONFIG_TRY(expr)                                             \
    do {                                                                \
        if (auto&& sp_try_result_ = (expr); !sp_try_result_) {          \
            return ::sp::Unexpected(std::move(sp_try_result_.error())); \
        }                                                               \
    } while (0)

namespace sp::config::detail {

/// The errors of one file, collected so a parser can go on after the first:
/// --check-config reports every error, a start or reload the first. Keeps at
/// most kMaxErrors (a fuzzed file may hold a million); the rest are counted.
class Diagnostics final {
public:
    static constexpr size_t kMaxErrors = 100;

    /// Records the error of `r`, if any. True when `r` holds a value.
    template <typename T>
    bool ok(const Result<T>& r) {
        if (r) {
            return true;
        }
        add(r.error());
        return false;
    }
    void add(Error e);
    void add(const Unexpected& u) { add(u.value()); }

    /// An unknown key was probably meant as `key_path` ("did you mean", or
    /// "belongs in [auth]" for a whole table): a rule that `key_path` is
    /// required then stays quiet, since the unknown key's error says it all.
    void note_meant(std::string key_path) { meant_.push_back(std::move(key_path)); }
    /// True when `key_path` itself, a key inside it or the table holding it
    /// ("auth" for "auth.keys") was noted as meant.
    [[nodiscard]] bool meant(std::string_view key_path) const noexcept;

    /// Errors recorded so far, dropped ones included.
    [[nodiscard]] size_t count() const noexcept { return errors_.size() + dropped_; }
    [[nodiscard]] bool empty() const noexcept { return count() == 0; }

    /// The errors in file order (line, then column; errors without a line
    /// first), and a last one saying how many were dropped, if any.
    [[nodiscard]] std::vector<Error> sorted() const;
    /// The first error in file order, its message noting how many more the
    /// file holds. Only when !empty().
    [[nodiscard]] Error first() const;

private:
    std::vector<Error> errors_;
    size_t dropped_ = 0;
    std::vector<std::string> meant_;
};

/// 1-based position in the file; 1:1 when toml++ has none (the root table).
struct Pos {
    int line = 1;
    int column = 1;
};

[[nodiscard]] Pos pos_of(const toml::source_region& r) noexcept;
[[nodiscard]] inline Pos pos_of(const toml::node& n) noexcept {
    return pos_of(n.source());
}

/// The Config error every parser returns.
[[nodiscard]] Unexpected config_error(const std::string& file, Pos pos, std::string key,
                                      std::string message);

/// Key-path convention (documented in relay_config.hpp): tables and keys
/// joined with '.', array elements as "[N]" with N counted from 0.
[[nodiscard]] std::string join_key(std::string_view parent, std::string_view key);
[[nodiscard]] std::string index_key(std::string_view parent, size_t index);

/// Optimal-string-alignment edit distance (adjacent swaps count as one edit).
[[nodiscard]] size_t edit_distance(std::string_view a, std::string_view b);

/// The allowed key closest to `unknown`: within 2 edits, or one being a
/// prefix of the other (at least 3 characters long). nullopt when none is close.
[[nodiscard]] std::optional<std::string_view> suggest_key(
    std::string_view unknown, std::span<const std::string_view> allowed);

/// One table of a file's schema, used to say "this key belongs in [auth]".
struct SchemaTable {
    std::string_view name;
    std::span<const std::string_view> keys;
    bool array = false;  // written [[name]]
};

/// Reads one string element of an array with its position and key path.
struct StringItem {
    std::string value;
    Pos pos;
    std::string key;
};

/// Reads typed values out of one table. A missing key leaves the caller's
/// default untouched; a present key of the wrong type or out of range is an
/// error at the value's position.
class TableReader final {
public:
    /// `path` is this table's key path ("" for the root, "relay", "service[1]").
    TableReader(const std::string& file, const toml::table& table, std::string path,
                std::span<const SchemaTable> schema = {});

    [[nodiscard]] const toml::table& table() const noexcept { return table_; }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] const std::string& file() const noexcept { return file_; }
    [[nodiscard]] Pos pos() const noexcept { return pos_of(table_); }
    [[nodiscard]] std::string key(std::string_view k) const { return join_key(path_, k); }

    /// An error about key `k` of this table, at `pos`.
    [[nodiscard]] Unexpected error(Pos pos, std::string_view k, std::string message) const;
    /// An error about a required key that is absent: at the table's position.
    [[nodiscard]] Unexpected missing(std::string_view k, std::string message) const;

    /// Records an error for every key not in `allowed`, each with a "did you
    /// mean" hint when one is close. True when there was none.
    bool check_keys(std::span<const std::string_view> allowed, Diagnostics& d) const;

    /// Integer in [min, max] into `ret_value` when present.
    [[nodiscard]] Result<void> read_uint(std::string_view k, uint32_t min, uint32_t max,
                                         uint32_t& ret_value) const;
    [[nodiscard]] Result<void> read_bool(std::string_view k, bool& ret_value) const;
    [[nodiscard]] Result<void> read_string(std::string_view k, std::string& ret_value) const;
    /// A file name: a string without NUL bytes; a relative one is resolved
    /// against the config file's directory (see resolve_path).
    [[nodiscard]] Result<void> read_path(std::string_view k, std::string& ret_value) const;
    /// A string with its position; nullopt when absent.
    [[nodiscard]] Result<std::optional<StringItem>> string_item(std::string_view k) const;
    /// An array of strings; nullopt when absent.
    [[nodiscard]] Result<std::optional<std::vector<StringItem>>> strings(std::string_view k) const;
    /// A sub-table; nullptr when absent, an error when `k` is not a table.
    [[nodiscard]] Result<const toml::table*> sub_table(std::string_view k) const;
    /// An array of tables ([[k]]); nullptr when absent.
    [[nodiscard]] Result<const toml::array*> table_array(std::string_view k) const;

private:
    const std::string& file_;
    const toml::table& table_;
    std::string path_;
    std::span<const SchemaTable> schema_;
};

/// Parses TOML text; a syntax error comes back with toml++'s position.
[[nodiscard]] Result<toml::table> parse_document(std::string_view text, const std::string& file);

/// Reads a whole config file (at most 4 MiB) for load_*_config.
[[nodiscard]] Result<std::string> read_config_file(const std::string& path);

/// "splice"/"copy" style enum values: an error lists the accepted words.
[[nodiscard]] Unexpected bad_enum(const TableReader& r, const StringItem& item, std::string_view k,
                                  std::string_view accepted);

/// Reads `data_path` ("splice" | "copy") when present.
[[nodiscard]] Result<void> read_data_path(const TableReader& r, DataPath& ret_value);

/// Relative file names in a config resolve against the config file's
/// directory, so a daemon started from any cwd reads the same files.
[[nodiscard]] std::string resolve_path(const std::string& config_file, const std::string& value);

/// Checks a status socket path: absolute and short enough for sun_path.
[[nodiscard]] Result<void> check_socket_path(const TableReader& r, const StringItem& item,
                                             std::string_view k);

/// An address-parsing error (sp::Error from base/addr) moved to a position.
[[nodiscard]] Unexpected relocate(const TableReader& r, const StringItem& item, Error e);

/// Parses every item as a CIDR; records an error for each one that is not
/// and returns the others.
[[nodiscard]] std::vector<Cidr> parse_cidrs(const TableReader& r,
                                            const std::vector<StringItem>& items, Diagnostics& d);

/// Name rule shared by agent.name, service names and key IDs: 1-64 of
/// [A-Za-z0-9._-].
[[nodiscard]] bool valid_name(std::string_view s) noexcept;

}  // namespace sp::config::detail
