// SPDX-License-Identifier: Apache-2.0
// The forward proxy's users ([outbound] users): one "user:password" line
// each, as RFC 1929 and HTTP Basic carry them. Parsing only; the file is
// read (mode 0600, owner checked like key files) by config/outbound_users.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace sp::outbound {

/// RFC 1929 carries each of user and password in at most 255 bytes.
inline constexpr size_t kMaxCredential = 255;
/// Users one file may hold (a bound on memory and on the parse).
inline constexpr size_t kMaxUsers = 10000;

class Users final {
public:
    Users() = default;
    /// Lines "user:password"; blank lines and lines starting with '#' are
    /// skipped; a trailing CR is ignored. The user is 1-255 bytes without
    /// ':' and control characters, the password 1-255 bytes without control
    /// characters (it may hold ':'). Errors name `path:LINE` and never quote
    /// a password; a duplicate user is an error.
    [[nodiscard]] static Result<Users> parse(std::string_view text, const std::string& path);

    /// True when `user` exists with exactly `password`. The password compare
    /// takes the same time wherever the first difference is.
    [[nodiscard]] bool check(std::string_view user, std::string_view password) const;
    [[nodiscard]] bool empty() const noexcept { return users_.empty(); }
    [[nodiscard]] size_t size() const noexcept { return users_.size(); }

private:
    std::map<std::string, std::string, std::less<>> users_;
};

}  // namespace sp::outbound
