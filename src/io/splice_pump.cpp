// SPDX-License-Identifier: Apache-2.0
// The session data plane: readiness from io_uring, bytes moved by non-blocking
// splice(2) (or recv/send) in this thread. Modelled on HAProxy's
// raw_sock_to_pipe/raw_sock_from_pipe: never IORING_OP_SPLICE, which always
// runs in io-wq and would park a kernel thread per idle session.
//
// DataPath::Copy runs on io_uring: one RECV per direction with
// IOSQE_BUFFER_SELECT from the worker's provided-buffer ring, so a buffer is
// picked only when bytes arrive and an idle session holds none (a pending
// RECV on a socket is poll-armed in the kernel, not parked in io-wq: the
// thread-count test checks that). Filled buffers are sent in order, one SEND
// at a time; while one is being sent a RECV may fill a second, never a third
// (Direction::kMaxBufs): two buffers per direction are the backpressure. When no buffer ring can be
// registered, and for sockets that refuse splice, the same state machine as splice runs with
// recv/send syscalls through a BufferPool buffer held only while bytes are in flight.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "io/session.hpp"
#include "io/worker.hpp"

namespace sp::io {

namespace {

// Chunks moved per direction before yielding to other sessions: a fast
// sender and receiver would otherwise keep one session looping forever.
constexpr int kBudget = 32;

using Clock = std::chrono::steady_clock;

bool is_peer_error(int err) noexcept {
    return err == ECONNRESET || err == EPIPE || err == ETIMEDOUT || err == ECONNABORTED ||
           err == EHOSTUNREACH || err == ENETUNREACH || err == ENOTCONN;
}

// uring: the oldest filled buffer becomes the one being sent.
void start_head(detail::Direction& d) noexcept {
    d.held = d.lens[0];
    d.buf_off = 0;
}

}  // namespace

SessionId Worker::start_session(UniqueFd client, UniqueFd peer, CloseFn on_close,
                                uint32_t idle_timeout_s) {
    for (const UniqueFd* fd : {&client, &peer}) {
        int fl = fcntl(fd->get(), F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK) == 0) {
            (void)fcntl(fd->get(), F_SETFL, fl | O_NONBLOCK);
        }
    }
    const SessionId id = sessions_->emplace();
    detail::Session& s = *sessions_->get(id);
    s.fd[0] = std::move(client);
    s.fd[1] = std::move(peer);
    s.on_close = std::move(on_close);
    s.idle_timeout_s = idle_timeout_s;
    s.start = s.last_activity = Clock::now();
    const bool copy = options_.data_path == DataPath::Copy;
    for (auto& d : s.dir) {
        d.copy = copy && !buf_ring_;
        d.uring = copy && buf_ring_;
    }
    ++open_sessions_;
    for (int i = 0; i < 2; ++i) {
        if (s.dir[i].uring) {
            arm_recv(id, s, i);
        } else {
            arm_poll_in(id, s, i);
        }
    }
    return id;
}

void Worker::close_session(SessionId id, std::string_view reason) {
    if (detail::Session* s = sessions_->get(id)) {
        end_session(id, *s, reason, true);
    }
}

void Worker::arm_poll_in(SessionId id, detail::Session& s, int side) noexcept {
    if (s.poll_in_armed[side] || s.closing) {
        return;
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        end_session(id, s, "error", true);
        return;
    }
    // Multishot: one SQE per socket for the session's life. It reports each
    // wakeup (edge-like), so Direction::readable remembers a level until
    // the source says EAGAIN.
    // On the io_uring copy path this poll only watches a finished source for
    // a late reset (POLLERR); RECVs do the reading.
    io_uring_prep_poll_multishot(sqe, s.fd[side].get(),
                                 s.dir[side].uring ? POLLERR : POLLIN | POLLRDHUP);
    io_uring_sqe_set_data64(sqe, encode(Tag{id.slot, id.gen, Op::PollIn, uint8_t(side)}));
    s.poll_in_armed[side] = true;
    ++s.inflight;
}

void Worker::arm_poll_out(SessionId id, detail::Session& s, int dir) noexcept {
    if (s.poll_out_armed[dir] || s.closing) {
        return;
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        end_session(id, s, "error", true);
        return;
    }
    // One-shot: checked against the current state when armed, so no wakeup
    // between our EAGAIN and this arm can be lost.
    io_uring_prep_poll_add(sqe, s.fd[1 - dir].get(), POLLOUT);
    io_uring_sqe_set_data64(sqe, encode(Tag{id.slot, id.gen, Op::PollOut, uint8_t(dir)}));
    s.poll_out_armed[dir] = true;
    ++s.inflight;
}

void Worker::on_session_poll(const Tag& tag, const Completion& c) noexcept {
    const SessionId id{tag.slot, tag.gen};
    detail::Session* s = sessions_->get(id);
    if (s == nullptr || tag.dir > 1) {
        ++stats_.stale_completions;
        return;
    }
    const int idx = tag.dir;
    if (tag.op == Op::PollIn) {
        if ((c.flags & IORING_CQE_F_MORE) == 0) {
            s->poll_in_armed[idx] = false;
            --s->inflight;
        }
    } else {
        s->poll_out_armed[idx] = false;
        --s->inflight;
    }
    if (s->closing) {
        maybe_free(id, *s);
        return;
    }
    if (c.res < 0) {
        // A poll we built failed: the socket is unusable. Not a peer's doing.
        fail_session(id, *s, tag.op == Op::PollIn ? idx : 1 - idx, c.res);
        return;
    }
    const unsigned mask = static_cast<unsigned>(c.res);
    if (tag.op == Op::PollIn) {
        detail::Direction& d = s->dir[idx];
        if (d.uring) {
            int err = (mask & POLLERR) != 0 ? socket_error(s->fd[idx].get()) : 0;
            if (err < 0) {
                fail_session(id, *s, idx, err);
            }
            return;
        }
        d.readable = true;
        if (d.read_eof && (mask & POLLERR) != 0) {
            // The source already sent FIN, so nothing reads it: only here do
            // we learn that it was reset afterwards.
            int err = socket_error(s->fd[idx].get());
            if (err < 0) {
                fail_session(id, *s, idx, err);
                return;
            }
        }
        pump(id, idx);
        s = sessions_->get(id);
        if (s != nullptr && !s->closing && !s->poll_in_armed[idx] && !s->dir[idx].read_eof) {
            arm_poll_in(id, *s, idx);  // the multishot ended (CQ overflow): re-arm
        }
    } else {
        s->dir[idx].write_blocked = false;
        pump(id, idx);
    }
}

namespace {

// Source -> pipe or buffer. Tri-state like HAProxy: > 0 bytes, 0 EOF, < 0 -errno.
int fill_pipe(int src, const Pipe& p, uint32_t len) noexcept {
    ssize_t r =
        splice(src, nullptr, p.write_end.get(), nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    return r >= 0 ? static_cast<int>(r) : -errno;
}

int drain_pipe(const Pipe& p, int dst, uint32_t len) noexcept {
    ssize_t r =
        splice(p.read_end.get(), nullptr, dst, nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (r == 0) {
        return -EAGAIN;  // cannot happen with bytes in the pipe; never spin on it
    }
    return r >= 0 ? static_cast<int>(r) : -errno;
}

int fill_buffer(int src, std::byte* buf, uint32_t len) noexcept {
    ssize_t r = recv(src, buf, len, MSG_DONTWAIT);
    return r >= 0 ? static_cast<int>(r) : -errno;
}

int drain_buffer(const std::byte* buf, int dst, uint32_t len) noexcept {
    ssize_t r = send(dst, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r == 0) {
        return -EAGAIN;
    }
    return r >= 0 ? static_cast<int>(r) : -errno;
}

}  // namespace

void Worker::pump(SessionId id, int di) noexcept {
    detail::Session* s = sessions_->get(id);
    if (s == nullptr || s->closing) {
        return;
    }
    detail::Direction& d = s->dir[di];
    if (d.done) {
        return;
    }
    const int src = s->fd[di].get();
    const int dst = s->fd[1 - di].get();
    for (int round = 0; round < kBudget; ++round) {
        if (d.held > 0) {
            if (d.write_blocked) {
                return;  // the armed POLLOUT resumes us
            }
            int n = d.pipe ? drain_pipe(*d.pipe, dst, d.held)
                           : drain_buffer(d.buf.get() + d.buf_off, dst, d.held);
            if (n > 0) {
                d.held -= static_cast<uint32_t>(n);
                d.buf_off = d.held == 0 ? 0 : d.buf_off + static_cast<uint32_t>(n);
                d.bytes += static_cast<uint64_t>(n);
                s->last_activity = Clock::now();
                continue;
            }
            if (n == -EAGAIN) {
                // Backpressure: the bytes stay in this one pipe or buffer
                // and the source is not read until they are gone, so a slow
                // reader throttles the writer through TCP windows.
                d.write_blocked = true;
                arm_poll_out(id, *s, di);
                return;
            }
            fail_session(id, *s, 1 - di, n);
            return;
        }
        if (d.read_eof) {
            finish_direction(id, *s, di);
            return;
        }
        if (!d.readable) {
            release_holder(*s, di);  // idle: give the pipe or buffer back
            return;
        }
        // Fill only into an empty pipe: then EAGAIN can only mean "source
        // empty", never "pipe full" (HAProxy stops reading while its pipe
        // holds data for the same reason).
        if (!d.copy && !d.pipe && !d.buf) {
            d.pipe = pipes_.take();
            if (!d.pipe) {
                ++stats_.pipe_exhausted;  // this chunk goes through a buffer
            }
        }
        int n;
        if (d.pipe) {
            n = fill_pipe(src, *d.pipe, d.pipe->size);
            if (n > 0 && static_cast<uint32_t>(n) >= d.pipe->size / 2) {
                // Half a pipe or more in one call: a bulk transfer. Not "a
                // full pipe": with small skb fragments (real NICs) the pipe
                // runs out of slots well before it runs out of bytes.
                (void)pipes_.grow(*d.pipe);
            }
        } else {
            if (!d.buf) {
                d.buf = buffers_.take();
            }
            d.buf_off = 0;
            n = fill_buffer(src, d.buf.get(), buffers_.size());
        }
        if (n > 0) {
            d.held = static_cast<uint32_t>(n);
            s->last_activity = Clock::now();
            continue;
        }
        if (n == 0) {
            d.read_eof = true;
            continue;
        }
        if (n == -EAGAIN || n == -EINTR) {
            d.readable = false;
            release_holder(*s, di);
            return;
        }
        if (d.pipe && (n == -EINVAL || n == -ENOSYS || n == -EBADF)) {
            // This socket type cannot splice: recv/send from now on.
            d.copy = true;
            ++stats_.splice_fallbacks;
            release_holder(*s, di);
            continue;
        }
        fail_session(id, *s, di, n);
        return;
    }
    // Budget spent with work left: continue after the next completion batch.
    if (!d.deferred) {
        d.deferred = true;
        deferred_.emplace_back(id, di);
    }
}

void Worker::run_deferred() noexcept {
    if (deferred_.empty()) {
        return;
    }
    std::vector<std::pair<SessionId, int>> work;
    work.swap(deferred_);
    for (auto [id, di] : work) {
        if (detail::Session* s = sessions_->get(id)) {
            s->dir[di].deferred = false;
            pump(id, di);
        }
    }
}

void Worker::release_holder(detail::Session& s, int di) noexcept {
    detail::Direction& d = s.dir[di];
    if (d.pipe) {
        pipes_.give(std::move(*d.pipe), d.held == 0);
        d.pipe.reset();
    }
    if (d.buf) {
        buffers_.give(std::move(d.buf));
    }
    d.held = 0;
    d.buf_off = 0;
}

void Worker::finish_direction(SessionId id, detail::Session& s, int di) noexcept {
    detail::Direction& d = s.dir[di];
    release_holder(s, di);
    d.done = true;
    // Pass the FIN on. ENOTCONN means the other side is already gone; the
    // other direction will see that as its own error.
    (void)shutdown(s.fd[1 - di].get(), SHUT_WR);
    if (s.dir[1 - di].done) {
        end_session(id, s, "eof", false);
    } else if (d.uring) {
        arm_poll_in(id, s, di);  // nothing reads this source now: watch it for a reset
    }
}

void Worker::fail_session(SessionId id, detail::Session& s, int side, int err) noexcept {
    std::string_view reason = "error";
    if (is_peer_error(-err)) {
        reason = side == 0 ? "reset-by-client" : "reset-by-peer";
    }
    end_session(id, s, reason, true);
}

void Worker::end_session(SessionId id, detail::Session& s, std::string_view reason,
                         bool abortive) noexcept {
    if (s.closing) {
        return;
    }
    s.closing = true;
    --open_sessions_;
    // Cancel by fd while the fds are still open (the cancel resolves the fd
    // at submit); io_uring keeps its own file references until the polls
    // are gone, then the closes below take effect.
    for (int side = 0; side < 2; ++side) {
        if (s.inflight > 0) {
            if (io_uring_sqe* sqe = ring_->get_sqe()) {
                io_uring_prep_cancel_fd(sqe, s.fd[side].get(), IORING_ASYNC_CANCEL_ALL);
                io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Ignored, 0}));
            }
        }
    }
    (void)ring_->submit();
    if (abortive) {
        // SO_LINGER {1, 0}: close sends RST, so the other end learns that
        // the session broke instead of seeing a clean end of stream.
        const linger lg{1, 0};
        for (auto& fd : s.fd) {
            (void)setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
    }
    for (auto& fd : s.fd) {
        fd.reset();
    }
    release_holder(s, 0);
    release_holder(s, 1);
    for (auto& d : s.dir) {
        // The head buffer under a SEND still in flight goes back on its CQE.
        const uint8_t keep = d.send_inflight ? 1 : 0;
        for (uint8_t i = keep; i < d.nbufs; ++i) {
            give_buffer(d.bids[i]);
        }
        d.nbufs = std::min(d.nbufs, keep);
    }

    SessionEnd end;
    end.bytes_up = s.dir[0].bytes;
    end.bytes_down = s.dir[1].bytes;
    end.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - s.start);
    end.reason = reason;
    CloseFn fn = std::move(s.on_close);
    s.on_close = nullptr;
    if (fn) {
        fn(*this, id, end);  // may open or close other sessions; `s` stays valid (deque)
    }
    if (detail::Session* again = sessions_->get(id)) {
        maybe_free(id, *again);
    }
}

void Worker::maybe_free(SessionId id, detail::Session& s) noexcept {
    if (s.closing && s.inflight == 0) {
        (void)sessions_->erase(id);  // bumps the generation: later tags are stale
    }
}

// --- io_uring copy path ---

void Worker::arm_recv(SessionId id, detail::Session& s, int di) noexcept {
    detail::Direction& d = s.dir[di];
    if (s.closing || d.recv_inflight || d.read_eof || d.nbufs >= detail::Direction::kMaxBufs) {
        return;
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        end_session(id, s, "error", true);
        return;
    }
    io_uring_prep_recv(sqe, s.fd[di].get(), nullptr, buf_ring_->size(), 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = buf_ring_->group();
    io_uring_sqe_set_data64(sqe, encode(Tag{id.slot, id.gen, Op::Recv, uint8_t(di)}));
    d.recv_inflight = true;
    ++s.inflight;
}

void Worker::submit_send(SessionId id, detail::Session& s, int di) noexcept {
    detail::Direction& d = s.dir[di];
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        end_session(id, s, "error", true);
        return;
    }
    // A full socket does not fail the SEND: io_uring arms a poll and retries,
    // so a slow reader holds at most kMaxBufs buffers and no further RECV is
    // issued.
    io_uring_prep_send(sqe, s.fd[1 - di].get(), buf_ring_->data(d.bids[0]) + d.buf_off, d.held,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, encode(Tag{id.slot, id.gen, Op::Send, uint8_t(di)}));
    d.send_inflight = true;
    ++s.inflight;
}

void Worker::give_buffer(uint16_t bid) noexcept {
    buf_ring_->give(bid);
    // One buffer back: let one RECV that found the ring empty try again.
    while (!buf_waiters_.empty()) {
        auto [id, di] = buf_waiters_.front();
        buf_waiters_.erase(buf_waiters_.begin());
        detail::Session* s = sessions_->get(id);
        if (s != nullptr && !s->closing && !s->dir[di].recv_inflight &&
            s->dir[di].nbufs < detail::Direction::kMaxBufs && !s->dir[di].read_eof) {
            arm_recv(id, *s, di);
            break;
        }
    }
}

void Worker::on_session_io(const Tag& tag, const Completion& c) noexcept {
    const SessionId id{tag.slot, tag.gen};
    detail::Session* s = sessions_->get(id);
    const bool has_buffer = (c.flags & IORING_CQE_F_BUFFER) != 0;
    const auto bid = static_cast<uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT);
    if (s == nullptr || tag.dir > 1) {
        ++stats_.stale_completions;
        if (has_buffer && buf_ring_) {
            buf_ring_->took();
            give_buffer(bid);
        }
        return;
    }
    const int di = tag.dir;
    detail::Direction& d = s->dir[di];
    --s->inflight;
    if (tag.op == Op::Recv) {
        d.recv_inflight = false;
        if (has_buffer) {
            buf_ring_->took();
            if (s->closing || c.res <= 0) {
                give_buffer(bid);
            } else {
                d.bids[d.nbufs] = bid;
                d.lens[d.nbufs] = static_cast<uint32_t>(c.res);
                ++d.nbufs;
            }
        }
        if (s->closing) {
            maybe_free(id, *s);
            return;
        }
        if (c.res > 0) {
            s->last_activity = Clock::now();
            if (!d.send_inflight) {
                start_head(d);
                submit_send(id, *s, di);
            }
            arm_recv(id, *s, di);  // overlaps the SEND while a buffer is free
        } else if (c.res == 0) {
            d.read_eof = true;
            if (d.nbufs == 0) {
                finish_direction(id, *s, di);
            }  // else the last SEND's completion passes the FIN on
        } else if (c.res == -ENOBUFS) {
            ++stats_.recv_no_buffer;
            buf_waiters_.emplace_back(id, di);
        } else {
            fail_session(id, *s, di, c.res);
        }
        return;
    }
    // Send
    d.send_inflight = false;
    if (s->closing) {
        for (uint8_t i = 0; i < d.nbufs; ++i) {
            give_buffer(d.bids[i]);
        }
        d.nbufs = 0;
        maybe_free(id, *s);
        return;
    }
    if (c.res <= 0) {
        fail_session(id, *s, 1 - di, c.res == 0 ? -EPIPE : c.res);
        return;  // end_session gave the buffers back
    }
    const auto n = static_cast<uint32_t>(c.res);
    d.held -= n;
    d.buf_off += n;
    d.bytes += n;
    s->last_activity = Clock::now();
    if (d.held > 0) {
        submit_send(id, *s, di);  // a short send: the rest of the same buffer
        return;
    }
    const uint16_t done_bid = d.bids[0];
    for (uint8_t i = 1; i < d.nbufs; ++i) {
        d.bids[i - 1] = d.bids[i];
        d.lens[i - 1] = d.lens[i];
    }
    --d.nbufs;
    if (d.nbufs > 0) {
        start_head(d);
        submit_send(id, *s, di);
    } else if (d.read_eof) {
        give_buffer(done_bid);
        finish_direction(id, *s, di);
        return;
    }
    arm_recv(id, *s, di);  // before give_buffer, so a waiter cannot take our turn forever
    give_buffer(done_bid);
}

}  // namespace sp::io
