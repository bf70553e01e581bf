// SPDX-License-Identifier: Apache-2.0
// Typed reading of a request's "args" object, for command handlers: each
// getter refuses a member of the wrong type with a bad-args Failure that
// names it, so every command validates its arguments the same way.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "admin/protocol.hpp"

namespace sp::admin {

class Args final {
public:
    /// Borrows `args`, which must be a JSON object and outlive this view.
    explicit Args(const Json& args) noexcept : args_(args) {}

    /// BadArgs naming the first member not in `allowed`.
    [[nodiscard]] Outcome<void> only(std::initializer_list<std::string_view> allowed) const;

    /// The member as a string; nullopt when absent; BadArgs when not a string.
    [[nodiscard]] Outcome<std::optional<std::string>> string(std::string_view key) const;
    /// The member as a non-negative integer; BadArgs otherwise.
    [[nodiscard]] Outcome<std::optional<uint64_t>> uint(std::string_view key) const;
    [[nodiscard]] Outcome<std::optional<bool>> boolean(std::string_view key) const;
    /// A string member that must be present.
    [[nodiscard]] Outcome<std::string> required_string(std::string_view key) const;

    [[nodiscard]] const Json& json() const noexcept { return args_; }
    [[nodiscard]] bool empty() const noexcept { return args_.empty(); }

private:
    const Json& args_;
};

}  // namespace sp::admin
