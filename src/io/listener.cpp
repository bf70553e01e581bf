// SPDX-License-Identifier: Apache-2.0
#include "io/listener.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include "base/assert.hpp"
#include "io/classify.hpp"
#include "io/net.hpp"
#include "io/timer_list.hpp"

namespace sp::io {

namespace {

// Long enough that an fd shortage does not turn into an error per loop
// turn, short enough that clients barely notice once fds are back.
constexpr std::chrono::milliseconds kAcceptPause{100};

uint64_t accept_tag(uint32_t id) noexcept {
    return encode(Tag{id, 0, Op::Accept, 0});
}

}  // namespace

uint64_t Listeners::add(UniqueFd fd, Worker::AcceptFn on_accept, Worker::AcceptErrorFn on_error) {
    uint32_t id = next_id_++;
    while (id == 0 || listeners_.count(id) != 0) {
        id = next_id_++;
    }
    auto l = std::make_unique<Listener>();
    l->fd = std::move(fd);
    if (auto local = local_address(l->fd.get()); local && !local->ip().is_unspecified()) {
        l->local = *local;
    }
    l->on_accept = std::make_shared<const Worker::AcceptFn>(std::move(on_accept));
    l->on_error = std::move(on_error);
    Listener& ref = *l;
    listeners_.emplace(id, std::move(l));
    ++live_;
    maybe_arm(id, ref);
    return id;
}

void Listeners::maybe_arm(uint32_t id, Listener& l) noexcept {
    if (l.armed || l.paused || l.broken || l.removed) {
        return;
    }
    io_uring_sqe* sqe = ring_.get_sqe();
    if (sqe == nullptr) {
        ++stats_.sqe_refused;
        if (!l.queued) {
            l.queued = true;
            unarmed_.push_back(id);
        }
        return;
    }
    io_uring_prep_multishot_accept(sqe, l.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, accept_tag(id));
    l.armed = true;
}

bool Listeners::retry() noexcept {
    if (unarmed_.empty()) {
        return false;
    }
    std::vector<uint32_t> ids;
    ids.swap(unarmed_);
    for (uint32_t id : ids) {
        const auto it = listeners_.find(id);
        if (it != listeners_.end()) {
            it->second->queued = false;
            maybe_arm(id, *it->second);
        }
    }
    return !unarmed_.empty();
}

void Listeners::remove(uint64_t id) noexcept {
    const auto it = listeners_.find(static_cast<uint32_t>(id));
    if (it == listeners_.end() || it->second->removed) {
        return;
    }
    Listener& l = *it->second;
    l.removed = true;
    --live_;
    if (l.resume_timer != 0) {
        (void)timers_.cancel(l.resume_timer);
        l.resume_timer = 0;
    }
    if (l.armed) {
        ring_.cancel(accept_tag(it->first));
        // Submitted now: io_uring holds its own reference to the socket, which
        // stays listening (and completing handshakes) until the cancel ran.
        (void)ring_.submit();
    }
    // The entry itself is erased by collect() once nothing refers to it,
    // never under a running callback.
    l.fd.reset();
}

void Listeners::deliver(Listener& l, UniqueFd fd) noexcept {
    auto peer = peer_address(fd.get());
    auto local = l.local ? l.local : local_address(fd.get());
    if (peer && local && l.on_accept) {
        // Held here: the callback may remove this listener.
        const std::shared_ptr<const Worker::AcceptFn> fn = l.on_accept;
        (*fn)(owner_, std::move(fd), *peer, *local);
    }
    // else the client is already gone (ENOTCONN): drop it quietly.
}

void Listeners::sweep() noexcept {
    // Ids first: a callback may add or remove listeners.
    std::vector<uint32_t> ids;
    for (const auto& [id, l] : listeners_) {
        if (l->armed && !l->removed && !l->paused && !l->broken) {
            ids.push_back(id);
        }
    }
    constexpr int kMaxPerSweep = 64;
    for (const uint32_t id : ids) {
        for (int n = 0; n < kMaxPerSweep; ++n) {
            const auto it = listeners_.find(id);
            if (it == listeners_.end() || it->second->removed) {
                break;
            }
            Listener& l = *it->second;
            pollfd p{l.fd.get(), POLLIN, 0};
            if (::poll(&p, 1, 0) <= 0 || (p.revents & POLLIN) == 0) {
                break;
            }
            UniqueFd fd(::accept4(l.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!fd) {
                break;  // taken by the ring meanwhile, or an error the ring reports
            }
            ++stats_.accept_sweeps;
            deliver(l, std::move(fd));
        }
    }
}

void Listeners::collect() noexcept {
    for (auto it = listeners_.begin(); it != listeners_.end();) {
        if (it->second->removed && !it->second->armed) {
            it = listeners_.erase(it);
        } else {
            ++it;
        }
    }
}

void Listeners::pause(uint32_t id, Listener& l) noexcept {
    if (l.paused) {
        return;
    }
    l.paused = true;
    if (l.armed) {
        // Still armed: stop it, or it would post one error per connection
        // attempt. If the SQ refuses the cancel, Ring retries it.
        ring_.cancel(accept_tag(id));
    }
    l.resume_timer = timers_.add(TimerList::Clock::now() + kAcceptPause, [this, id](Worker&) {
        const auto it = listeners_.find(id);
        if (it == listeners_.end()) {
            return;
        }
        it->second->paused = false;
        it->second->resume_timer = 0;
        // Still armed when the cancel's CQE has not come back yet: that
        // final CQE arms it instead.
        maybe_arm(id, *it->second);
    });
}

void Listeners::report(Listener& l, int err, bool paused) noexcept {
    Worker::AcceptErrorFn fn = l.on_error;
    if (fn) {
        fn(owner_, err, paused);
    }
}

void Listeners::on_accept(const Tag& tag, const Completion& c) noexcept {
    const auto it = listeners_.find(tag.slot);
    if (it == listeners_.end()) {
        if (c.res >= 0) {
            UniqueFd drop(c.res);
        }
        ++stats_.stale_completions;
        return;
    }
    Listener& l = *it->second;
    const uint32_t id = tag.slot;
    if ((c.flags & IORING_CQE_F_MORE) == 0) {
        l.armed = false;
    }
    if (l.removed) {
        // Accepted before the cancel ran: the client's handshake is done
        // and its connection is ours, so it goes to the callback like any
        // other (which rejects it if its service is gone, or serves it when
        // the socket lives on elsewhere: a binary upgrade's successor holds
        // it, and dropping this one would reset a client nobody refused).
        if (c.res >= 0) {
            deliver(l, UniqueFd(c.res));
        }
        return;
    }
    if (c.res >= 0) {
        UniqueFd fd(c.res);
        // A multishot that ended (CQ overflow, or our pause's cancel racing
        // this accept) continues here.
        maybe_arm(id, l);
        deliver(l, std::move(fd));
        return;
    }
    switch (classify(Op::Accept, c.res)) {
        case Fault::Retry:
            // Includes our pause's -ECANCELED: maybe_arm waits for the pause.
            maybe_arm(id, l);
            return;
        case Fault::Peer:
            // One client's connection broke in the queue: the next is fine.
            ++stats_.accept_peer_errors;
            maybe_arm(id, l);
            return;
        case Fault::Resource:
            pause(id, l);
            report(l, c.res, true);
            return;
        case Fault::Unsupported:
        case Fault::Bug:
            break;
    }
    ++stats_.bugs;
    SP_BUG("accept failed on a listener we set up");
    l.broken = true;
    if (l.armed) {
        ring_.cancel(accept_tag(id));
    }
    report(l, c.res, false);
}

}  // namespace sp::io
