// SPDX-License-Identifier: Apache-2.0
// Signals as file descriptor events: the daemons block HUP, TERM and INT in
// every thread and read them from a signalfd in the control loop, so no
// handler ever runs in the middle of a data-plane operation.
#pragma once

#include <initializer_list>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace sp {

/// Blocks `signals` in the calling thread (threads started later inherit the
/// mask) and returns a non-blocking signalfd for them. Call it from main()
/// before starting any thread. SIGPIPE is ignored as a side effect: a peer
/// closing a socket is an error return, not a process kill.
[[nodiscard]] Result<UniqueFd> block_signals_to_fd(std::initializer_list<int> signals);

/// Reads one pending signal number from a signalfd; 0 when none is pending.
[[nodiscard]] int read_signal(int signal_fd) noexcept;

/// Raises RLIMIT_NOFILE's soft limit to its hard limit and returns the new
/// soft limit (each session costs several fds; the default 1024 is too low).
[[nodiscard]] Result<unsigned long> raise_fd_limit();

}  // namespace sp
