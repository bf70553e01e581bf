// SPDX-License-Identifier: Apache-2.0
// Result<T> and Error: how control-plane and startup code report failure. An
// Error carries enough (errno, config position, key) for main() to print the
// exact message and pick the exit code SPEC section 2 asks for.
#pragma once

#include <cerrno>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <tl/expected.hpp>

namespace sp {

enum class ErrorKind {
    Runtime,  // exit 1: the system refused something (bind, open, TLS)
    Usage,    // exit 2: bad command line
    Config,   // exit 2: bad configuration file; file/line/col/key are set
};

struct Error {
    ErrorKind kind = ErrorKind::Runtime;
    int code = 0;         // errno when one applies, else 0
    std::string message;  // human text, without position prefix
    std::string file;     // config errors: the file
    int line = 0;         // 1-based; 0 = unknown
    int column = 0;
    std::string key;  // dotted key path, e.g. "relay.threads"

    /// "FILE:LINE:COL: key: message" for config errors, else the message
    /// (with strerror when code is set).
    [[nodiscard]] std::string describe() const;
    /// 2 for Usage and Config, 1 for Runtime.
    [[nodiscard]] int exit_code() const { return kind == ErrorKind::Runtime ? 1 : 2; }
};

template <typename T>
using Result = tl::expected<T, Error>;

using Unexpected = tl::unexpected<Error>;

template <typename... Args>
[[nodiscard]] Unexpected runtime_error(int code, fmt::format_string<Args...> f, Args&&... args) {
    return Unexpected(
        Error{ErrorKind::Runtime, code, fmt::format(f, std::forward<Args>(args)...), {}, 0, 0, {}});
}

template <typename... Args>
[[nodiscard]] Unexpected usage_error(fmt::format_string<Args...> f, Args&&... args) {
    return Unexpected(
        Error{ErrorKind::Usage, 0, fmt::format(f, std::forward<Args>(args)...), {}, 0, 0, {}});
}

/// The errno of the last failed call, as an Unexpected with a message.
template <typename... Args>
[[nodiscard]] Unexpected errno_error(fmt::format_string<Args...> f, Args&&... args) {
    const int e = errno;
    return runtime_error(e, f, std::forward<Args>(args)...);
}

}  // namespace sp
