// SPDX-License-Identifier: Apache-2.0
// Socket helpers for the data plane: non-blocking listeners and connects.
#pragma once

#include <optional>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace sp::io {

/// A listening TCP socket: SOCK_NONBLOCK|SOCK_CLOEXEC, SO_REUSEADDR,
/// SO_REUSEPORT when `reuse_port`, IPV6_V6ONLY for v6 addresses. Never blocks.
[[nodiscard]] Result<UniqueFd> listen_tcp(const SocketAddress& addr, bool reuse_port, int backlog);

/// Starts a non-blocking connect; `out` receives the socket in every case
/// where one was created. Returns 0 (connected), -EINPROGRESS (wait for
/// POLLOUT, then read SO_ERROR with socket_error()), or -errno.
[[nodiscard]] int connect_tcp_nonblocking(const SocketAddress& addr, UniqueFd& out);

/// SO_ERROR of `fd` as -errno (0 when none): how a finished connect reports.
[[nodiscard]] int socket_error(int fd) noexcept;

/// Local and remote address of a connected socket (nullopt on failure).
[[nodiscard]] std::optional<SocketAddress> local_address(int fd) noexcept;
[[nodiscard]] std::optional<SocketAddress> peer_address(int fd) noexcept;

}  // namespace sp::io
