// SPDX-License-Identifier: Apache-2.0
#include "admin/args.hpp"

#include <algorithm>

namespace sp::admin {

Outcome<void> Args::only(std::initializer_list<std::string_view> allowed) const {
    for (const auto& [key, value] : args_.items()) {
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            return fail(ErrorCode::BadArgs, fmt::format("unknown argument \"{}\"", key));
        }
    }
    return {};
}

Outcome<std::optional<std::string>> Args::string(std::string_view key) const {
    const auto it = args_.find(key);
    if (it == args_.end()) {
        return std::nullopt;
    }
    if (!it->is_string()) {
        return fail(ErrorCode::BadArgs, fmt::format("argument \"{}\" must be a string", key));
    }
    return it->get<std::string>();
}

Outcome<std::optional<uint64_t>> Args::uint(std::string_view key) const {
    const auto it = args_.find(key);
    if (it == args_.end()) {
        return std::nullopt;
    }
    if (!it->is_number_unsigned()) {
        return fail(ErrorCode::BadArgs,
                    fmt::format("argument \"{}\" must be a non-negative integer", key));
    }
    return it->get<uint64_t>();
}

Outcome<std::optional<bool>> Args::boolean(std::string_view key) const {
    const auto it = args_.find(key);
    if (it == args_.end()) {
        return std::nullopt;
    }
    if (!it->is_boolean()) {
        return fail(ErrorCode::BadArgs, fmt::format("argument \"{}\" must be true or false", key));
    }
    return it->get<bool>();
}

Outcome<std::string> Args::required_string(std::string_view key) const {
    auto s = string(key);
    if (!s) {
        return tl::unexpected(std::move(s.error()));
    }
    if (!*s) {
        return fail(ErrorCode::BadArgs, fmt::format("argument \"{}\" is required", key));
    }
    return std::move(**s);
}

}  // namespace sp::admin
