// SPDX-License-Identifier: Apache-2.0
// The blocking client side of the status socket, for sallyportctl and tests:
// connect, send one request line, read one answer line. Never used by a
// daemon (it blocks).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "admin/protocol.hpp"
#include "base/result.hpp"

namespace sp::admin {

/// Longest answer line call() reads (a session list of a very busy relay
/// stays far below it).
inline constexpr size_t kMaxAnswerBytes = size_t{256} * 1024 * 1024;

/// Sends `request` to the unix stream socket at `path` and returns the
/// decoded answer (which may be ok == false: the daemon's own refusal).
/// Fails (Runtime) when the socket cannot be reached - the message says why
/// in an administrator's words (no such socket, permission denied, nothing
/// listening) - when no complete answer arrives within `timeout` in total,
/// or when the answer is not a valid answer line. Blocks up to `timeout`.
[[nodiscard]] Result<Response> call(const std::string& path, const Request& request,
                                    std::chrono::milliseconds timeout);

}  // namespace sp::admin
