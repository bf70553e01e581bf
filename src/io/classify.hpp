// SPDX-License-Identifier: Apache-2.0
// One error classifier for the data plane, indexed by operation (liburing
// examples/proxy.c's handler table): what a -errno from an accept, a poll, a
// RECV/SEND or a splice means for the session or listener that saw it.
#pragma once

#include <cstdint>

#include "io/op.hpp"

namespace sp::io {

/// The four answers of STYLE section 3.1, plus the splice fallback.
enum class Fault : uint8_t {
    /// Transient (-EINTR; -EAGAIN; -ECANCELED on an SQE nobody cancelled):
    /// do the same operation again. The pump handles -EAGAIN from its own
    /// syscalls as "no progress" before it asks.
    Retry,
    /// The remote end broke the connection, or something between us and it
    /// did (-ECONNRESET, -EPIPE, -ETIMEDOUT, -ECONNABORTED, ...): end that
    /// session quietly with a reset reason; for accept, take the next client.
    Peer,
    /// The host ran short (-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM): back off and
    /// resume later; other sessions carry on.
    Resource,
    /// splice(2) refused this socket (-EINVAL, -ENOSYS, -EBADF from
    /// SpliceIn only): move this direction to recv/send.
    Unsupported,
    /// An operation we built is wrong (-EBADF, -EFAULT, -EINVAL, ...):
    /// SP_BUG, then end that one session or stop that one listener.
    Bug,
};

/// Classifies `res` (< 0, a -errno) as returned by `op`. Total: every errno
/// has an answer; errnos a table does not name are Peer for socket I/O
/// (the connection is gone, whoever broke it), Resource for accept (paused
/// and reported, so it can never spin) and Bug for polls (a poll reports
/// readiness in its mask, never the network's errors in res).
[[nodiscard]] Fault classify(Op op, int res) noexcept;

}  // namespace sp::io
