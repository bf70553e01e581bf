// SPDX-License-Identifier: Apache-2.0
// PumpMode::Splice and PumpMode::Fallback: readiness from io_uring, bytes
// moved by non-blocking splice(2) (or recv/send) in this thread. Modelled on
// HAProxy's raw_sock_to_pipe/raw_sock_from_pipe: never IORING_OP_SPLICE,
// which always runs in io-wq and would park a kernel thread per idle session.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "base/assert.hpp"
#include "io/pump.hpp"

namespace sp::io {

namespace {

// Chunks moved per direction before yielding to other sessions: a fast
// sender and receiver would otherwise keep one session looping forever.
constexpr int kBudget = 32;

// Source -> pipe or buffer. Tri-state like HAProxy: > 0 bytes, 0 EOF, < 0 -errno.
int fill_pipe(int src, const Pipe& p, uint32_t len) noexcept {
    const ssize_t r =
        splice(src, nullptr, p.write_end.get(), nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    return r >= 0 ? static_cast<int>(r) : -errno;
}

int drain_pipe(const Pipe& p, int dst, uint32_t len) noexcept {
    const ssize_t r =
        splice(p.read_end.get(), nullptr, dst, nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (r == 0) {
        return -EAGAIN;  // cannot happen with bytes in the pipe; never spin on it
    }
    return r >= 0 ? static_cast<int>(r) : -errno;
}

int fill_buffer(int src, std::byte* buf, uint32_t len) noexcept {
    const ssize_t r = recv(src, buf, len, MSG_DONTWAIT);
    return r >= 0 ? static_cast<int>(r) : -errno;
}

int drain_buffer(const std::byte* buf, int dst, uint32_t len) noexcept {
    const ssize_t r = send(dst, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r == 0) {
        return -EAGAIN;
    }
    return r >= 0 ? static_cast<int>(r) : -errno;
}

}  // namespace

void SessionPump::arm_poll_out(SessionId id, Session& s, Dir d) noexcept {
    Direction& x = s.dir[d];
    if (x.poll_out_armed || s.closing) {
        return;
    }
    io_uring_sqe* sqe = ring_.get_sqe();
    if (sqe == nullptr) {
        ++stats_.sqe_refused;
        starve(id, s);  // write_blocked stays set: resume() arms it
        return;
    }
    // One-shot: checked against the current state when armed, so no wakeup
    // between our EAGAIN and this arm can be lost.
    io_uring_prep_poll_add(sqe, s.fd[sink(d)].get(), POLLOUT);
    io_uring_sqe_set_data64(sqe, encode(Tag{id.slot, id.gen, Op::PollOut, wire(d)}));
    x.poll_out_armed = true;
    ++s.inflight;
}

void SessionPump::on_poll_out(SessionId id, Session& s, Dir d, const Completion& c) noexcept {
    Direction& x = s.dir[d];
    x.poll_out_armed = false;
    SP_ASSERT(s.inflight > 0);
    --s.inflight;
    if (s.closing) {
        maybe_free(id, s);
        return;
    }
    if (c.res < 0) {
        switch (const Fault f = classify(Op::PollOut, c.res)) {
            case Fault::Retry:
                arm_poll_out(id, s, d);
                return;
            case Fault::Resource:
                ++stats_.resource_waits;
                starve(id, s);
                return;
            default:
                fail(id, s, sink(d), f);
                return;
        }
    }
    // POLLERR or POLLHUP here too: the next write reports the error.
    x.write_blocked = false;
    pump(id, d);
}

void SessionPump::pump(SessionId id, Dir d) noexcept {
    Session* s = sessions_.get(id);
    if (s == nullptr || s->closing) {
        return;
    }
    Direction& x = s->dir[d];
    if (x.flow == Flow::Done) {
        return;
    }
    const int src = s->fd[source(d)].get();
    const int dst = s->fd[sink(d)].get();
    for (int round = 0; round < kBudget; ++round) {
        if (x.held > 0) {
            if (x.write_blocked) {
                return;  // the POLLOUT resumes us
            }
            const Op op = x.pipe ? Op::SpliceOut : Op::SendCall;
            const int n = x.pipe ? drain_pipe(*x.pipe, dst, x.held)
                                 : drain_buffer(x.buf.get() + x.buf_off, dst, x.held);
            if (n > 0) {
                x.held -= static_cast<uint32_t>(n);
                x.buf_off = x.held == 0 ? 0 : x.buf_off + static_cast<uint32_t>(n);
                x.bytes += static_cast<uint64_t>(n);
                s->last_activity = Clock::now();
                continue;
            }
            if (n == -EAGAIN) {
                // Backpressure: the bytes stay in this one pipe or buffer
                // and the source is not read until they are gone, so a slow
                // reader throttles the writer through TCP windows.
                x.write_blocked = true;
                arm_poll_out(id, *s, d);
                return;
            }
            switch (const Fault f = classify(op, n)) {
                case Fault::Retry:
                    continue;  // EINTR: the same write again
                case Fault::Resource:
                    // The bytes stay; retry() writes them again later.
                    ++stats_.resource_waits;
                    starve(id, *s);
                    return;
                default:
                    fail(id, *s, sink(d), f);
                    return;
            }
        }
        if (x.flow == Flow::Eof) {
            finish(id, *s, d);
            return;
        }
        if (!x.readable) {
            release_holder(*s, d);  // idle: give the pipe or buffer back
            return;
        }
        // Fill only into an empty pipe: then EAGAIN can only mean "source
        // empty", never "pipe full" (HAProxy stops reading while its pipe
        // holds data for the same reason).
        if (x.mode == PumpMode::Splice && !x.pipe && !x.buf) {
            x.pipe = pipes_.take();
            if (!x.pipe) {
                ++stats_.pipe_exhausted;  // this chunk goes through a buffer
            }
        }
        const Op op = x.pipe ? Op::SpliceIn : Op::RecvCall;
        int n;
        if (x.pipe) {
            n = fill_pipe(src, *x.pipe, x.pipe->size);
            if (n > 0 && static_cast<uint32_t>(n) >= x.pipe->size / 2) {
                // Half a pipe or more in one call: a bulk transfer. Not "a
                // full pipe": with small skb fragments (real NICs) the pipe
                // runs out of slots well before it runs out of bytes.
                (void)pipes_.grow(*x.pipe);
            }
        } else {
            if (!x.buf) {
                x.buf = buffers_.take();
            }
            x.buf_off = 0;
            n = fill_buffer(src, x.buf.get(), buffers_.size());
        }
        if (n > 0) {
            x.held = static_cast<uint32_t>(n);
            s->last_activity = Clock::now();
            continue;
        }
        if (n == 0) {
            x.flow = Flow::Eof;
            continue;
        }
        if (n == -EAGAIN) {
            x.readable = false;
            release_holder(*s, d);
            return;
        }
        switch (const Fault f = classify(op, n)) {
            case Fault::Retry:
                continue;  // EINTR: HAProxy retries at once; the budget bounds it
            case Fault::Unsupported:
                // splice(2) gave EINVAL, ENOSYS or EBADF: this socket (or
                // kernel) cannot splice. Nothing entered the pipe, so recv/send
                // take over this direction without losing a byte.
                x.mode = PumpMode::Fallback;
                ++stats_.splice_fallbacks;
                release_holder(*s, d);
                continue;
            case Fault::Resource:
                // ENOMEM/ENOBUFS: nothing was read. Readiness stays set, and
                // retry() pumps again once the loop went round.
                ++stats_.resource_waits;
                release_holder(*s, d);
                starve(id, *s);
                return;
            default:
                fail(id, *s, source(d), f);
                return;
        }
    }
    // Budget spent with work left: continue after the next completion batch.
    if (!x.deferred) {
        x.deferred = true;
        deferred_.emplace_back(id, d);
    }
}

void SessionPump::run_deferred() noexcept {
    if (deferred_.empty()) {
        return;
    }
    std::vector<std::pair<SessionId, Dir>> work;
    work.swap(deferred_);
    for (auto [id, d] : work) {
        if (Session* s = sessions_.get(id)) {
            s->dir[d].deferred = false;
            pump(id, d);
        }
    }
}

}  // namespace sp::io
