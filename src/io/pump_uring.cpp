// SPDX-License-Identifier: Apache-2.0
// PumpMode::Uring: one RECV per direction with IOSQE_BUFFER_SELECT from the
// worker's provided-buffer ring, so a buffer is picked only when bytes arrive
// and an idle session holds none (a pending RECV on a socket is poll-armed in
// the kernel, not parked in io-wq: the thread-count test checks that).
// Filled buffers are sent in order, one SEND at a time; while one is being
// sent a RECV may fill a second, never a third (Direction::kMaxBufs): two
// buffers per direction are the backpressure. A source no RECV reads (both
// buffers full, the ring empty, or after EOF) is watched for POLLERR, so its
// reset still ends the session (issue 16).
#include <sys/socket.h>

#include <cerrno>

#include "base/assert.hpp"
#include "io/pump.hpp"

namespace sp::io {

namespace {

// The oldest filled buffer becomes the one being sent.
void start_head(Direction& x) noexcept {
    x.held = x.lens[0];
    x.buf_off = 0;
}

}  // namespace

void SessionPump::settle(SessionId id, Session& s, Dir d) noexcept {
    if (s.closing) {
        return;
    }
    Direction& x = s.dir[d];
    if (x.nbufs > 0 && !x.send_armed) {
        if (x.held == 0) {
            start_head(x);
        }
        if (io_uring_sqe* sqe = ring_.get_sqe()) {
            // A full socket does not fail the SEND: io_uring arms a poll and
            // retries, so a slow reader holds at most kMaxBufs buffers and no
            // further RECV is issued.
            io_uring_prep_send(sqe, s.fd[sink(d)].get(), buf_ring_->data(x.bids[0]) + x.buf_off,
                               x.held, MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, encode(Tag{id.slot, id.gen, Op::Send, wire(d)}));
            x.send_armed = true;
            ++s.inflight;
        } else {
            ++stats_.sqe_refused;
            starve(id, s);
        }
    }
    if (x.flow == Flow::Open && !x.recv_armed && !x.waits_buffer && x.nbufs < Direction::kMaxBufs) {
        if (io_uring_sqe* sqe = ring_.get_sqe()) {
            io_uring_prep_recv(sqe, s.fd[source(d)].get(), nullptr, buf_ring_->size(), 0);
            sqe->flags |= IOSQE_BUFFER_SELECT;
            sqe->buf_group = buf_ring_->group();
            io_uring_sqe_set_data64(sqe, encode(Tag{id.slot, id.gen, Op::Recv, wire(d)}));
            x.recv_armed = true;
            ++s.inflight;
        } else {
            ++stats_.sqe_refused;
            starve(id, s);
        }
    }
    if (!x.recv_armed) {
        arm_poll(id, s, source(d));
    }
}

void SessionPump::give_buffer(uint16_t bid) noexcept {
    buf_ring_->give(bid);
    if (buf_waiters_.empty()) {
        return;
    }
    // Wake every RECV that found the ring empty, not just one: a RECV picks
    // its buffer only when bytes arrive, so a woken waiter whose source is
    // quiet would leave this buffer free while a waiter with bytes to read
    // slept on. Those that lose the race get ENOBUFS and queue again.
    std::deque<std::pair<SessionId, Dir>> waiters;
    waiters.swap(buf_waiters_);
    for (const auto& [id, d] : waiters) {
        Session* s = sessions_.get(id);
        if (s == nullptr || !s->dir[d].waits_buffer) {
            continue;
        }
        s->dir[d].waits_buffer = false;
        settle(id, *s, d);
    }
}

void SessionPump::on_recv(SessionId id, Session& s, Dir d, const Completion& c) noexcept {
    Direction& x = s.dir[d];
    x.recv_armed = false;
    SP_ASSERT(s.inflight > 0);
    --s.inflight;
    if ((c.flags & IORING_CQE_F_BUFFER) != 0) {
        const auto bid = static_cast<uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT);
        buf_ring_->took();
        if (s.closing || c.res <= 0) {
            give_buffer(bid);
        } else {
            // settle() arms a RECV only below kMaxBufs: one more would
            // overwrite the record of a buffer holding undelivered bytes.
            SP_CHECK(x.nbufs < Direction::kMaxBufs);
            x.bids[x.nbufs] = bid;
            x.lens[x.nbufs] = static_cast<uint32_t>(c.res);
            ++x.nbufs;
        }
    }
    if (s.closing) {
        maybe_free(id, s);
        return;
    }
    if (c.res > 0) {
        s.last_activity = Clock::now();
        settle(id, s, d);  // sends it if no SEND is out; a RECV overlaps that SEND
        return;
    }
    if (c.res == 0) {
        x.flow = Flow::Eof;
        if (x.nbufs == 0) {
            finish(id, s, d);
        } else {
            settle(id, s, d);  // the last SEND's completion passes the FIN on
        }
        return;
    }
    switch (const Fault f = classify(Op::Recv, c.res)) {
        case Fault::Retry:
            settle(id, s, d);
            return;
        case Fault::Resource:
            if (c.res == -ENOBUFS) {
                // The buffer ring is empty: every buffer holds bytes of a
                // session whose sink is slow. The next one given back is ours.
                ++stats_.recv_no_buffer;
                x.waits_buffer = true;
                buf_waiters_.emplace_back(id, d);
                settle(id, s, d);  // arms the watch on the unread source
            } else {
                ++stats_.resource_waits;
                arm_poll(id, s, source(d));
                starve(id, s);  // resume() arms the RECV again
            }
            return;
        default:
            fail(id, s, source(d), f);
            return;
    }
}

void SessionPump::on_send(SessionId id, Session& s, Dir d, const Completion& c) noexcept {
    Direction& x = s.dir[d];
    x.send_armed = false;
    SP_ASSERT(s.inflight > 0);
    --s.inflight;
    if (s.closing) {
        for (uint8_t i = 0; i < x.nbufs; ++i) {
            give_buffer(x.bids[i]);
        }
        x.nbufs = 0;
        maybe_free(id, s);
        return;
    }
    if (c.res <= 0) {
        // 0 for a SEND of held > 0 bytes: the sink shut down for writing,
        // which only a vanished peer explains.
        const int res = c.res == 0 ? -EPIPE : c.res;
        switch (const Fault f = classify(Op::Send, res)) {
            case Fault::Retry:
                settle(id, s, d);
                return;
            case Fault::Resource:
                ++stats_.resource_waits;
                starve(id, s);  // resume() sends the rest
                return;
            default:
                fail(id, s, sink(d), f);  // end() gives the buffers back
                return;
        }
    }
    const auto n = static_cast<uint32_t>(c.res);
    x.held -= n;
    x.buf_off += n;
    x.bytes += n;
    s.last_activity = Clock::now();
    if (x.held > 0) {
        settle(id, s, d);  // a short send: the rest of the same buffer
        return;
    }
    const uint16_t done_bid = x.bids[0];
    for (uint8_t i = 1; i < x.nbufs; ++i) {
        x.bids[i - 1] = x.bids[i];
        x.lens[i - 1] = x.lens[i];
    }
    --x.nbufs;
    if (x.nbufs == 0 && x.flow == Flow::Eof) {
        give_buffer(done_bid);
        finish(id, s, d);
        return;
    }
    settle(id, s, d);
    give_buffer(done_bid);
}

}  // namespace sp::io
