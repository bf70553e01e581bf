// SPDX-License-Identifier: Apache-2.0
#include "outbound/users.hpp"

#include <fmt/format.h>

namespace sp::outbound {

namespace {

bool has_control(std::string_view s) noexcept {
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            return true;
        }
    }
    return false;
}

Unexpected line_error(const std::string& path, int line, std::string message) {
    return Unexpected(Error{ErrorKind::Config, 0, std::move(message), path, line, 1, {}});
}

}  // namespace

Result<Users> Users::parse(std::string_view text, const std::string& path) {
    Users out;
    int line_no = 0;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        const size_t first = line.find_first_not_of(" \t");
        if (first == std::string_view::npos || line[first] == '#') {
            continue;
        }
        const size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            return line_error(path, line_no, "expected \"user:password\"");
        }
        const std::string_view user = line.substr(0, colon);
        const std::string_view password = line.substr(colon + 1);
        if (user.empty() || user.size() > kMaxCredential || has_control(user)) {
            return line_error(path, line_no,
                              fmt::format("the user must be 1-{} bytes without control "
                                          "characters",
                                          kMaxCredential));
        }
        if (password.empty() || password.size() > kMaxCredential || has_control(password)) {
            return line_error(path, line_no,
                              fmt::format("the password of user \"{}\" must be 1-{} bytes "
                                          "without control characters",
                                          user, kMaxCredential));
        }
        if (out.users_.size() >= kMaxUsers) {
            return line_error(path, line_no, fmt::format("more than {} users", kMaxUsers));
        }
        if (!out.users_.emplace(std::string(user), std::string(password)).second) {
            return line_error(path, line_no, fmt::format("user \"{}\" is listed twice", user));
        }
    }
    return out;
}

bool Users::check(std::string_view user, std::string_view password) const {
    const auto it = users_.find(user);
    if (it == users_.end()) {
        return false;
    }
    const std::string& want = it->second;
    // Every byte of the longer of the two is looked at: the time says
    // nothing about where the first difference is.
    const size_t n = std::max(want.size(), password.size());
    unsigned diff = want.size() == password.size() ? 0U : 1U;
    for (size_t i = 0; i < n; ++i) {
        const auto a = static_cast<unsigned char>(i < want.size() ? want[i] : 0);
        const auto b = static_cast<unsigned char>(i < password.size() ? password[i] : 0);
        diff |= static_cast<unsigned>(a ^ b);
    }
    return diff == 0;
}

}  // namespace sp::outbound
