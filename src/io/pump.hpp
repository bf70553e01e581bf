// SPDX-License-Identifier: Apache-2.0
// SessionPump: a worker's sessions and the engines that move their bytes.
// pump.cpp holds the life cycle (start, errors, close, free, retry); the
// engines are pump_splice.cpp (readiness + splice(2), with recv/send as its
// fallback) and pump_uring.cpp (io_uring RECV/SEND with provided buffers).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "base/unique_fd.hpp"
#include "io/buf_ring.hpp"
#include "io/buffer_pool.hpp"
#include "io/classify.hpp"
#include "io/op.hpp"
#include "io/pipe_pool.hpp"
#include "io/ring.hpp"
#include "io/session.hpp"
#include "io/session_table.hpp"
#include "io/worker.hpp"

namespace sp::io {

/// Not thread-safe: owned by one Worker and used on its thread. It asks its
/// host for SQEs (`ring`) and for the Worker reference it hands to on_close;
/// nothing else.
///
/// In-flight accounting, the rule every private method keeps:
/// Session::inflight counts SQEs submitted for the session whose final CQE
/// has not arrived (a multishot poll counts until its CQE without F_MORE).
/// An arm increments it only once it holds an SQE; a completion handler
/// decrements it first thing. At most one of each per socket or direction:
/// the `*_armed` flags say which are out.
///
/// Arms never fail silently: when the SQ refuses, the arm counts in
/// WorkerStats::sqe_refused and puts the session on the starved list, and
/// retry() re-derives every missing arm from the session's state.
class SessionPump final {
public:
    using Clock = std::chrono::steady_clock;

    SessionPump(Worker& owner, Ring& ring, const WorkerOptions& options, WorkerStats& stats);
    ~SessionPump();
    SessionPump(const SessionPump&) = delete;
    SessionPump& operator=(const SessionPump&) = delete;

    /// DataPath::Copy: registers the provided-buffer ring PumpMode::Uring
    /// needs. Call once on the worker thread after Ring::enable() (with
    /// SINGLE_ISSUER only the issuer may register). On failure (a kernel
    /// without buffer rings) Copy runs in PumpMode::Fallback instead.
    void register_buffers() noexcept;

    /// See Worker::start_session.
    SessionId start(UniqueFd client, UniqueFd peer, Worker::CloseFn on_close,
                    uint32_t idle_timeout_s);
    /// See Worker::close_session.
    void close(SessionId id, std::string_view reason) noexcept;
    /// Ends every open session with EndReason::Closed and `reason`.
    void close_all(std::string_view reason) noexcept;
    /// Ends sessions idle for their idle_timeout_s at `now`.
    void close_idle(Clock::time_point now) noexcept;

    /// A CQE tagged PollIn, PollOut, Watch, Recv or Send.
    void on_completion(const Tag& tag, const Completion& c) noexcept;
    /// Continues directions whose budget ran out in the last batch.
    void run_deferred() noexcept;
    [[nodiscard]] bool has_deferred() const noexcept { return !deferred_.empty(); }
    /// Re-arms what the SQ refused and retries directions that backed off on
    /// a resource error. Returns true while some still wait.
    [[nodiscard]] bool retry() noexcept;

    [[nodiscard]] size_t open() const noexcept { return open_; }
    /// See Worker::session_progress.
    [[nodiscard]] std::optional<SessionProgress> progress(SessionId id) const noexcept;
    [[nodiscard]] const PipePool& pipes() const noexcept { return pipes_; }
    [[nodiscard]] const BufferPool& buffers() const noexcept { return buffers_; }
    [[nodiscard]] size_t buffers_in_use() const noexcept {
        return buffers_.in_use() + (buf_ring_ ? buf_ring_->in_use() : 0);
    }
    [[nodiscard]] bool uring() const noexcept { return buf_ring_ != nullptr; }

private:
    // --- pump.cpp: life cycle ---

    /// Multishot poll on `side`: PollIn (POLLIN|POLLRDHUP) for the readiness
    /// engines, Watch (POLLERR only) for Uring, where RECVs do the reading
    /// and the watch covers a source no RECV reads. No-op while closing or
    /// armed. +1 inflight on success; starves the session when refused.
    void arm_poll(SessionId id, Session& s, Side side) noexcept;
    /// PollIn and Watch CQEs. Every wakeup checks POLLERR first (SO_ERROR):
    /// a reset must end the session even when its direction is stalled on
    /// the other side (issue 16), not only once the stream ended.
    void on_poll(SessionId id, Session& s, Side side, const Completion& c) noexcept;
    /// Ends the session for a failed operation on `side`: Peer ends it with
    /// reset-by-client/reset-by-peer; Bug counts, SP_BUG, ends it with
    /// "error". Callers handle Retry, Resource and Unsupported themselves.
    void fail(SessionId id, Session& s, Side side, Fault f) noexcept;
    /// The session's direction `d` delivered everything and saw FIN: passes
    /// the FIN on (shutdown(SHUT_WR) of the sink); ends the session with eof
    /// once both directions did. Releases the direction's pipe or buffer.
    void finish(SessionId id, Session& s, Dir d) noexcept;
    /// Close as a state: marks the session closing (no arm runs after this),
    /// sets SO_LINGER {1, 0} unless `cause` is Eof (close then sends RST),
    /// cancels its SQEs by fd, gives back pipes and buffers no SQE uses, and
    /// runs on_close once. The fds stay open until the slot is freed, so a
    /// cancel by fd can never name a reused fd number.
    void end(SessionId id, Session& s, EndReason cause, std::string_view reason) noexcept;
    /// IORING_OP_ASYNC_CANCEL by fd, ALL, for each socket while inflight > 0.
    /// When the SQ refuses, sets cancel_pending and starves the session.
    void cancel_ops(SessionId id, Session& s) noexcept;
    /// Frees the slot once closing and inflight == 0: the fds close (RST if
    /// end() set the linger), and the generation moves on so a late tag is
    /// stale. The only place a slot is freed.
    void maybe_free(SessionId id, Session& s) noexcept;
    /// Puts the session on the starved list for retry(); idempotent.
    void starve(SessionId id, Session& s) noexcept;
    /// Arms what the session's state says is missing and pumps what can move.
    void resume(SessionId id) noexcept;
    /// Gives the direction's pipe (cached if empty, closed if it may hold
    /// bytes) and fallback buffer back, and forgets `held`. Not for Uring
    /// buffers, which may be under a SEND.
    void release_holder(Session& s, Dir d) noexcept;

    // --- pump_splice.cpp: PumpMode::Splice and Fallback ---

    /// One-shot POLLOUT on the sink of `d`, which said EAGAIN. +1 inflight;
    /// starves when refused (write_blocked stays, retry() arms it).
    void arm_poll_out(SessionId id, Session& s, Dir d) noexcept;
    void on_poll_out(SessionId id, Session& s, Dir d, const Completion& c) noexcept;
    /// Moves `d`'s bytes with non-blocking syscalls until EAGAIN, EOF, an
    /// error or kBudget chunks (then queued on deferred_). Fills only an
    /// empty pipe or buffer, so EAGAIN from the source means "empty", never
    /// "pipe full"; a full sink leaves the bytes where they are and stops
    /// reading (backpressure without buffering). May end the session: look
    /// it up by id afterwards.
    void pump(SessionId id, Dir d) noexcept;

    // --- pump_uring.cpp: PumpMode::Uring ---

    /// Arms what `d` needs from its state: the SEND of the head buffer if
    /// none is out, a RECV while the source is open and a buffer slot is
    /// free (at most kMaxBufs, so a stalled sink stops the reading), and a
    /// Watch on the source whenever no RECV reads it. Refusals starve.
    void settle(SessionId id, Session& s, Dir d) noexcept;
    void on_recv(SessionId id, Session& s, Dir d, const Completion& c) noexcept;
    void on_send(SessionId id, Session& s, Dir d, const Completion& c) noexcept;
    /// Who returns a provided buffer: the Send CQE that finished it; end()
    /// for every buffer no SEND is using; the Send CQE of a closing session
    /// for the head; on_completion for a buffer a stale or closing RECV
    /// picked. give_buffer() then lets every RECV waiting for a buffer
    /// (ENOBUFS) try again.
    void give_buffer(uint16_t bid) noexcept;

    Worker& owner_;
    Ring& ring_;
    const WorkerOptions& options_;
    WorkerStats& stats_;
    std::unique_ptr<BufRing> buf_ring_;
    PipePool pipes_;
    BufferPool buffers_;
    SessionTable<Session> sessions_;
    size_t open_ = 0;
    std::vector<std::pair<SessionId, Dir>> deferred_;    // directions with budget left over
    std::vector<SessionId> starved_;                     // arms or resources to retry
    std::deque<std::pair<SessionId, Dir>> buf_waiters_;  // Uring RECVs that hit ENOBUFS
};

}  // namespace sp::io
