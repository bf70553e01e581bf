// SPDX-License-Identifier: Apache-2.0
// The session life cycle shared by both engines: start, readiness and error
// polls, failure, close as a state, freeing, and the retry of what the SQ or
// a resource refused.
#include "io/pump.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "base/assert.hpp"
#include "io/net.hpp"

namespace sp::io {

namespace {

// A zero option means "the default": the value WorkerOptions itself declares,
// so the two cannot drift apart.
constexpr WorkerOptions kDefaults{};

uint32_t or_default(uint32_t value, uint32_t fallback) noexcept {
    return value == 0 ? fallback : value;
}

}  // namespace

std::string_view to_string(EndReason r) noexcept {
    switch (r) {
        case EndReason::Eof:
            return "eof";
        case EndReason::ResetByClient:
            return "reset-by-client";
        case EndReason::ResetByPeer:
            return "reset-by-peer";
        case EndReason::IdleTimeout:
            return "idle-timeout";
        case EndReason::Closed:
            return "closed";
        case EndReason::Error:
            return "error";
    }
    return "error";
}

SessionPump::SessionPump(Worker& owner, Ring& ring, const WorkerOptions& options,
                         WorkerStats& stats)
    : owner_(owner),
      ring_(ring),
      options_(options),
      stats_(stats),
      pipes_(options.pipe_size, options.max_pipes, options.pipe_grow_size, options.pipe_grow_pages),
      buffers_(or_default(options.fallback_buffer_size, kDefaults.fallback_buffer_size)) {}

SessionPump::~SessionPump() = default;

void SessionPump::register_buffers() noexcept {
    if (options_.data_path != DataPath::Copy || buf_ring_) {
        return;
    }
    auto br =
        BufRing::create(ring_.raw(), 0, or_default(options_.copy_buffers, kDefaults.copy_buffers),
                        or_default(options_.copy_buffer_size, kDefaults.copy_buffer_size));
    if (br) {
        buf_ring_ = std::move(*br);
    }
}

SessionId SessionPump::start(UniqueFd client, UniqueFd peer, Worker::CloseFn on_close,
                             uint32_t idle_timeout_s) {
    // Worker::start_session's contract, checked only in debug builds: two
    // fcntl(2) calls per socket per session are a measurable share of a
    // short connection's cost.
    SP_ASSERT((fcntl(client.get(), F_GETFL) & O_NONBLOCK) != 0);
    SP_ASSERT((fcntl(peer.get(), F_GETFL) & O_NONBLOCK) != 0);
    const SessionId id = sessions_.emplace();
    Session& s = *sessions_.get(id);
    s.fd[Side::Client] = std::move(client);
    s.fd[Side::Peer] = std::move(peer);
    s.on_close = std::move(on_close);
    s.idle_timeout_s = idle_timeout_s;
    s.start = s.last_activity = Clock::now();
    PumpMode mode = PumpMode::Splice;
    if (options_.data_path == DataPath::Copy) {
        mode = buf_ring_ ? PumpMode::Uring : PumpMode::Fallback;
    }
    for (Dir d : {Dir::Up, Dir::Down}) {
        s.dir[d].mode = mode;
    }
    ++open_;
    resume(id);
    return id;
}

std::optional<SessionProgress> SessionPump::progress(SessionId id) const noexcept {
    const Session* s = sessions_.get(id);
    if (s == nullptr || s->closing) {
        return std::nullopt;
    }
    return SessionProgress{s->dir[Dir::Up].bytes, s->dir[Dir::Down].bytes, s->start,
                           s->last_activity};
}

void SessionPump::close(SessionId id, std::string_view reason) noexcept {
    if (Session* s = sessions_.get(id)) {
        end(id, *s, EndReason::Closed, reason);
    }
}

void SessionPump::close_all(std::string_view reason) noexcept {
    for (SessionId id : sessions_.ids()) {
        if (Session* s = sessions_.get(id)) {
            end(id, *s, EndReason::Closed, reason);
        }
    }
}

void SessionPump::close_idle(Clock::time_point now) noexcept {
    // Traffic only stores a timestamp, so no timer is re-armed per byte.
    std::vector<SessionId> idle;
    sessions_.for_each([&](SessionId id, Session& s) {
        if (!s.closing && s.idle_timeout_s != 0 &&
            now - s.last_activity >= std::chrono::seconds(s.idle_timeout_s)) {
            idle.push_back(id);
        }
    });
    for (SessionId id : idle) {
        if (Session* s = sessions_.get(id)) {
            end(id, *s, EndReason::IdleTimeout, to_string(EndReason::IdleTimeout));
        }
    }
}

void SessionPump::on_completion(const Tag& tag, const Completion& c) noexcept {
    const SessionId id{tag.slot, tag.gen};
    Session* s = sessions_.get(id);
    if (s == nullptr) {
        ++stats_.stale_completions;
        if (tag.op == Op::Recv && (c.flags & IORING_CQE_F_BUFFER) != 0 && buf_ring_) {
            buf_ring_->took();
            give_buffer(static_cast<uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT));
        }
        return;
    }
    if (tag.dir > 1) {
        ++stats_.bugs;
        SP_BUG("session tag with a side or direction beyond 1");
        return;
    }
    switch (tag.op) {
        case Op::PollIn:
        case Op::Watch:
            on_poll(id, *s, static_cast<Side>(tag.dir), c);
            return;
        case Op::PollOut:
            on_poll_out(id, *s, static_cast<Dir>(tag.dir), c);
            return;
        case Op::Recv:
            on_recv(id, *s, static_cast<Dir>(tag.dir), c);
            return;
        case Op::Send:
            on_send(id, *s, static_cast<Dir>(tag.dir), c);
            return;
        default:
            ++stats_.bugs;
            SP_BUG("the pump got a CQE of an op it never builds");
            return;
    }
}

void SessionPump::arm_poll(SessionId id, Session& s, Side side) noexcept {
    if (s.closing || s.poll_armed[side]) {
        return;
    }
    io_uring_sqe* sqe = ring_.get_sqe();
    if (sqe == nullptr) {
        ++stats_.sqe_refused;
        starve(id, s);
        return;
    }
    // Multishot: one SQE per socket for the session's life. It reports each
    // wakeup (edge-like), so Direction::readable remembers a level until
    // the source says EAGAIN. POLLERR and POLLHUP are always reported.
    const bool uring = s.dir[read_from(side)].mode == PumpMode::Uring;
    io_uring_prep_poll_multishot(sqe, s.fd[side].get(), uring ? POLLERR : POLLIN | POLLRDHUP);
    io_uring_sqe_set_data64(
        sqe, encode(Tag{id.slot, id.gen, uring ? Op::Watch : Op::PollIn, wire(side)}));
    s.poll_armed[side] = true;
    ++s.inflight;
}

void SessionPump::on_poll(SessionId id, Session& s, Side side, const Completion& c) noexcept {
    if ((c.flags & IORING_CQE_F_MORE) == 0) {
        s.poll_armed[side] = false;
        SP_ASSERT(s.inflight > 0);
        --s.inflight;
    }
    if (s.closing) {
        maybe_free(id, s);
        return;
    }
    const Dir d = read_from(side);
    if (c.res < 0) {
        switch (const Fault f = classify(Op::PollIn, c.res)) {
            case Fault::Retry:
                break;  // armed again below
            case Fault::Resource:
                ++stats_.resource_waits;
                starve(id, s);
                return;
            default:
                fail(id, s, side, f);
                return;
        }
    } else {
        if ((static_cast<unsigned>(c.res) & POLLERR) != 0) {
            // The socket holds an error (a reset, an ICMP-reported failure).
            // Checked on every wakeup, not only once the stream ended: a
            // direction stalled on a sink that does not read neither reads
            // nor writes its source, so this is the only place a reset of
            // that source shows (issue 16).
            if (const int err = socket_error(s.fd[side].get()); err < 0) {
                fail(id, s, side, classify(Op::RecvCall, err));
                return;
            }
        }
        if (s.dir[d].mode != PumpMode::Uring) {
            s.dir[d].readable = true;
            pump(id, d);
        }
    }
    // `s` may have ended (and been freed) under pump().
    Session* again = sessions_.get(id);
    if (again != nullptr && !again->closing && !again->poll_armed[side]) {
        arm_poll(id, *again, side);  // the multishot ended (CQ overflow): re-arm
    }
}

void SessionPump::fail(SessionId id, Session& s, Side side, Fault f) noexcept {
    if (f == Fault::Peer) {
        const EndReason r =
            side == Side::Client ? EndReason::ResetByClient : EndReason::ResetByPeer;
        end(id, s, r, to_string(r));
        return;
    }
    // Retry, Resource and Unsupported never get here (the callers handle
    // them); Bug: an operation we built is wrong, for this session only.
    ++stats_.bugs;
    SP_BUG("a session operation failed in a way only our own mistake explains");
    end(id, s, EndReason::Error, to_string(EndReason::Error));
}

void SessionPump::finish(SessionId id, Session& s, Dir d) noexcept {
    Direction& x = s.dir[d];
    release_holder(s, d);
    x.flow = Flow::Done;
    // Pass the FIN on. ENOTCONN means the other side is already gone; the
    // other direction will see that as its own error.
    (void)shutdown(s.fd[sink(d)].get(), SHUT_WR);
    if (s.dir[other(d)].flow == Flow::Done) {
        end(id, s, EndReason::Eof, to_string(EndReason::Eof));
    } else if (x.mode == PumpMode::Uring) {
        arm_poll(id, s, source(d));  // nothing reads this source now: watch it for a reset
    }
}

void SessionPump::end(SessionId id, Session& s, EndReason cause, std::string_view reason) noexcept {
    if (s.closing) {
        return;
    }
    s.closing = true;
    --open_;
    if (cause != EndReason::Eof) {
        // SO_LINGER {1, 0}: the close in maybe_free() sends RST, so the other
        // end learns that the session broke instead of seeing a clean end of
        // stream.
        const linger lg{1, 0};
        for (Side side : {Side::Client, Side::Peer}) {
            (void)setsockopt(s.fd[side].get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
    }
    cancel_ops(id, s);
    for (Dir d : {Dir::Up, Dir::Down}) {
        release_holder(s, d);
        Direction& x = s.dir[d];
        // The head buffer under a SEND still in flight goes back on its CQE:
        // the kernel may be reading it.
        const uint8_t keep = x.send_armed ? 1 : 0;
        for (uint8_t i = keep; i < x.nbufs; ++i) {
            give_buffer(x.bids[i]);
        }
        x.nbufs = std::min(x.nbufs, keep);
    }

    SessionEnd e;
    e.bytes_up = s.dir[Dir::Up].bytes;
    e.bytes_down = s.dir[Dir::Down].bytes;
    e.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - s.start);
    e.reason = reason;
    e.cause = cause;
    Worker::CloseFn fn = std::move(s.on_close);
    s.on_close = nullptr;
    if (fn) {
        fn(owner_, id, e);  // may open or close other sessions; `s` stays valid (deque)
    }
    if (Session* again = sessions_.get(id)) {
        maybe_free(id, *again);
    }
}

void SessionPump::cancel_ops(SessionId id, Session& s) noexcept {
    s.cancel_pending = false;
    if (s.inflight == 0) {
        return;
    }
    // Cancel by fd, ALL: every poll, RECV and SEND of the session in one
    // SQE per socket. The fds are still open, and stay open until
    // maybe_free(), so the cancel resolves to this session's sockets (a
    // cancel on the SQ is always processed before any SQE queued behind it).
    for (Side side : {Side::Client, Side::Peer}) {
        io_uring_sqe* sqe = ring_.get_sqe();
        if (sqe == nullptr) {
            // Both again on retry; a second cancel of the same fd finds
            // nothing (-ENOENT) and costs nothing.
            ++stats_.sqe_refused;
            s.cancel_pending = true;
            starve(id, s);
            return;
        }
        io_uring_prep_cancel_fd(sqe, s.fd[side].get(), IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Cancel, 0}));
    }
}

void SessionPump::maybe_free(SessionId id, Session& s) noexcept {
    if (s.closing && s.inflight == 0) {
        (void)sessions_.erase(id);  // bumps the generation: later tags are stale
    }
}

void SessionPump::starve(SessionId id, Session& s) noexcept {
    if (!s.starved) {
        s.starved = true;
        starved_.push_back(id);
    }
}

bool SessionPump::retry() noexcept {
    if (starved_.empty()) {
        return false;
    }
    std::vector<SessionId> ids;
    ids.swap(starved_);
    for (SessionId id : ids) {
        Session* s = sessions_.get(id);
        if (s == nullptr) {
            continue;  // freed since
        }
        s->starved = false;
        if (s->closing) {
            if (s->cancel_pending) {
                cancel_ops(id, *s);
            }
            maybe_free(id, *s);
        } else {
            resume(id);
        }
    }
    return !starved_.empty();
}

void SessionPump::resume(SessionId id) noexcept {
    for (Dir d : {Dir::Up, Dir::Down}) {
        // Looked up per direction: pumping the first may end the session.
        Session* cur = sessions_.get(id);
        if (cur == nullptr || cur->closing) {
            return;
        }
        Direction& x = cur->dir[d];
        if (x.mode == PumpMode::Uring) {
            settle(id, *cur, d);
            continue;
        }
        arm_poll(id, *cur, source(d));
        if (x.write_blocked) {
            arm_poll_out(id, *cur, d);
        } else if (x.held > 0 || x.readable) {
            pump(id, d);  // bytes that a resource error left behind
        }
    }
}

void SessionPump::release_holder(Session& s, Dir d) noexcept {
    Direction& x = s.dir[d];
    if (x.pipe) {
        pipes_.give(std::move(*x.pipe), x.held == 0);
        x.pipe.reset();
    }
    if (x.buf) {
        buffers_.give(std::move(x.buf));
    }
    if (x.mode != PumpMode::Uring) {
        x.held = 0;
        x.buf_off = 0;
    }
}

}  // namespace sp::io
