// SPDX-License-Identifier: Apache-2.0
// Blocking-socket helpers the client workloads share: resolve a loopback
// target, connect with a bound, send/receive exactly n bytes by a deadline,
// and open a session (connect, banner, header).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "options.hpp"
#include "wire.hpp"

namespace sp::bench {

/// HOST:PORT (or localhost:PORT); a usage error unless loopback or `allow_remote`.
[[nodiscard]] Result<SocketAddress> resolve(std::string_view text, bool allow_remote);

/// SO_RCVTIMEO and SO_SNDTIMEO of `ms`, best effort.
void set_timeouts(int fd, int ms) noexcept;

/// TCP_NODELAY, best effort (it only affects latency).
void set_nodelay(int fd) noexcept;

/// Blocking socket connected to `addr` within `timeout_ms`, with 200 ms I/O
/// timeouts so that loops can check their deadlines; -errno on failure.
[[nodiscard]] int connect_to(const SocketAddress& addr, int timeout_ms, UniqueFd& ret_fd) noexcept;

/// connect_to `addr`, or with --socks5 to the proxy followed by a SOCKS5
/// CONNECT to `addr` (no authentication; the reply must be "succeeded").
[[nodiscard]] int connect_target(const Options& o, const SocketAddress& addr, int timeout_ms,
                                 UniqueFd& ret_fd) noexcept;

/// Sends all `n` bytes before `deadline`; returns n, or -errno (-ETIMEDOUT).
[[nodiscard]] ssize_t send_all(int fd, const void* p, size_t n, int64_t deadline) noexcept;

/// Receives exactly `n` bytes before `deadline`; returns n, fewer on EOF, or -errno.
[[nodiscard]] ssize_t recv_all(int fd, void* p, size_t n, int64_t deadline) noexcept;

/// Reads and checks the server's banner; 0 when it matched, else -errno or -EPROTO.
[[nodiscard]] int read_banner(int fd, int64_t deadline) noexcept;

/// Connect, optional banner, header: the opening every client mode shares.
[[nodiscard]] int open_session(const Options& o, const SocketAddress& addr, const Header& h,
                               UniqueFd& ret_fd, int64_t deadline) noexcept;

/// strerror of a negative errno.
[[nodiscard]] std::string err_text(int neg_errno);

}  // namespace sp::bench
