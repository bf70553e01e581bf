// SPDX-License-Identifier: Apache-2.0
#include "io/worker.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "io/session.hpp"

namespace sp::io {

namespace {

constexpr unsigned kBatch = 256;
// A zero option means "the default": the value WorkerOptions itself declares,
// so the two cannot drift apart.
constexpr WorkerOptions kDefaults{};

uint32_t or_default(uint32_t value, uint32_t fallback) noexcept {
    return value == 0 ? fallback : value;
}

constexpr std::chrono::milliseconds kAcceptPause{100};

__kernel_timespec to_timespec(std::chrono::milliseconds d) noexcept {
    if (d.count() < 0) {
        d = std::chrono::milliseconds{0};
    }
    __kernel_timespec ts{};
    ts.tv_sec = d.count() / 1000;
    ts.tv_nsec = (d.count() % 1000) * 1000000;
    return ts;
}

bool is_resource_error(int err) noexcept {
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

// The listener itself is broken (closed, not listening): re-arming would spin.
bool is_fatal_accept_error(int err) noexcept {
    return err == EBADF || err == EINVAL || err == ENOTSOCK || err == EOPNOTSUPP || err == EFAULT;
}

}  // namespace

Result<std::unique_ptr<Worker>> Worker::create(const WorkerOptions& options) {
    unsigned entries = or_default(options.ring_entries, kDefaults.ring_entries);
    auto ring = Ring::create(entries, entries * 4);
    if (!ring) {
        return tl::unexpected(ring.error());
    }
    UniqueFd efd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!efd) {
        return errno_error("eventfd for worker {}", options.index);
    }
    return std::make_unique<Worker>(Private{}, options, std::move(*ring), std::move(efd));
}

Worker::Worker(const Private& /*key*/, const WorkerOptions& options, std::unique_ptr<Ring> ring,
               UniqueFd event_fd)
    : options_(options),
      ring_(std::move(ring)),
      event_fd_(std::move(event_fd)),
      pipes_(options.pipe_size, options.max_pipes, options.pipe_grow_size, options.pipe_grow_pages),
      buffers_(or_default(options.fallback_buffer_size, kDefaults.fallback_buffer_size)),
      sessions_(std::make_unique<SessionTable<detail::Session>>()) {}

Worker::~Worker() {
    if (thread_.joinable()) {
        stop_now();
        thread_.join();
    }
}

void Worker::start() {
    thread_ = std::thread([this] { run(); });
}

void Worker::request_stop() {
    stop_requested_.store(true);
    uint64_t one = 1;
    (void)!write(event_fd_.get(), &one, sizeof(one));  // a full counter still wakes the loop
}

void Worker::stop_now() {
    stop_now_.store(true);
    request_stop();
}

void Worker::join() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

void Worker::post(UniqueFunction<void(Worker&)> fn) {
    {
        std::lock_guard<std::mutex> lock(inbox_mutex_);
        inbox_.push_back(std::move(fn));
    }
    uint64_t one = 1;
    (void)!write(event_fd_.get(), &one, sizeof(one));
}

void Worker::run() noexcept {
    std::string name = "sp-worker-" + std::to_string(options_.index);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    // splice(pipe -> socket) has no MSG_NOSIGNAL: a peer that vanished would
    // raise SIGPIPE. Blocked here, it stays pending on this thread and the
    // call returns EPIPE, which the pump handles.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    if (ring_->enable() < 0) {
        exited_.store(true);
        return;
    }
    if (options_.data_path == DataPath::Copy) {
        // Registered here: with SINGLE_ISSUER only the issuer may register.
        // On failure (kernel without buffer rings) the copy path runs on
        // readiness plus recv/send instead, with identical semantics.
        auto br = BufRing::create(
            ring_->raw(), 0, or_default(options_.copy_buffers, kDefaults.copy_buffers),
            or_default(options_.copy_buffer_size, kDefaults.copy_buffer_size));
        if (br) {
            buf_ring_ = std::move(*br);
        }
    }
    arm_inbox();
    arm_tick();
    drain_inbox();

    Completion batch[kBatch];
    bool closed_all = false;
    while (true) {
        if (stop_now_.load() && !closed_all) {
            closed_all = true;
            close_all("closed");
        }
        if (stop_requested_.load() && (open_sessions_ == 0 || stop_now_.load())) {
            break;
        }
        if (!tick_armed_) {
            arm_tick();  // an earlier arm found no SQE: idle timeouts depend on it
        }
        run_deferred();
        // With work left over from a budget, only collect what is ready.
        int r = deferred_.empty() ? ring_->submit_and_wait() : ring_->submit_and_get_events();
        (void)r;  // -EINTR/-EBUSY/-ETIME: just drain and go round again
        unsigned n;
        do {
            n = ring_->drain(batch, kBatch);
            for (unsigned i = 0; i < n; ++i) {
                dispatch(batch[i]);
            }
        } while (n == kBatch);
        for (auto it = listeners_.begin(); it != listeners_.end();) {
            if (it->second->removed && !it->second->armed) {
                it = listeners_.erase(it);
            } else {
                ++it;
            }
        }
    }
    (void)ring_->submit();
    exited_.store(true);
}

void Worker::dispatch(const Completion& c) noexcept {
    const Tag tag = decode(c.user_data);
    switch (tag.op) {
        case Op::PollIn:
        case Op::PollOut:
            on_session_poll(tag, c);
            break;
        case Op::Recv:
        case Op::Send:
            on_session_io(tag, c);
            break;
        case Op::Accept:
            on_accept(tag, c);
            break;
        case Op::Timer:
        case Op::AcceptRearm:
            on_timer(tag, c);
            break;
        case Op::Tick:
            tick_armed_ = false;
            on_tick();
            break;
        case Op::Inbox:
            if ((c.flags & IORING_CQE_F_MORE) == 0) {
                inbox_armed_ = false;
                arm_inbox();
            }
            drain_inbox();
            break;
        case Op::WaitFd:
            on_wait(tag, c);
            break;
        case Op::None:
        case Op::Ignored:
            break;
    }
}

void Worker::arm_inbox() noexcept {
    if (inbox_armed_) {
        return;
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        return;  // the tick re-tries
    }
    io_uring_prep_poll_multishot(sqe, event_fd_.get(), POLLIN);
    io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Inbox, 0}));
    inbox_armed_ = true;
}

void Worker::drain_inbox() noexcept {
    (void)!read(event_fd_.get(), &inbox_value_, sizeof(inbox_value_));
    std::vector<UniqueFunction<void(Worker&)>> work;
    {
        std::lock_guard<std::mutex> lock(inbox_mutex_);
        work.swap(inbox_);
    }
    for (auto& fn : work) {
        if (fn) {
            fn(*this);
        }
    }
}

void Worker::arm_tick() noexcept {
    if (tick_armed_) {
        return;
    }
    static const __kernel_timespec kTick{1, 0};
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        return;
    }
    io_uring_prep_timeout(sqe, const_cast<__kernel_timespec*>(&kTick), 0, 0);
    io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Tick, 0}));
    tick_armed_ = true;
}

void Worker::on_tick() noexcept {
    arm_tick();
    arm_inbox();
    // Idle timeouts on a coarse tick: traffic only stores a timestamp, so no
    // timer is re-armed per byte.
    const auto now = std::chrono::steady_clock::now();
    std::vector<SessionId> idle;
    sessions_->for_each([&](SessionId id, detail::Session& s) {
        if (!s.closing && s.idle_timeout_s != 0 &&
            now - s.last_activity >= std::chrono::seconds(s.idle_timeout_s)) {
            idle.push_back(id);
        }
    });
    for (SessionId id : idle) {
        if (detail::Session* s = sessions_->get(id)) {
            end_session(id, *s, "idle-timeout", true);
        }
    }
}

void Worker::close_all(std::string_view reason) noexcept {
    for (SessionId id : sessions_->ids()) {
        if (detail::Session* s = sessions_->get(id)) {
            end_session(id, *s, reason, true);
        }
    }
    std::vector<uint32_t> waits;
    for (auto& [id, w] : waiters_) {
        waits.push_back(id);
    }
    for (uint32_t id : waits) {
        auto it = waiters_.find(id);
        if (it == waiters_.end()) {
            continue;
        }
        auto fn = std::move(it->second->fn);
        cancel_wait(id);
        if (fn) {
            fn(*this, -ECANCELED);
        }
    }
}

// --- listeners ---

uint64_t Worker::add_listener(UniqueFd listening_fd, AcceptFn on_accept, AcceptErrorFn on_error) {
    uint32_t id = next_listener_++;
    while (id == 0 || listeners_.count(id) != 0) {
        id = next_listener_++;
    }
    auto l = std::make_unique<detail::Listener>();
    l->fd = std::move(listening_fd);
    l->on_accept = std::move(on_accept);
    l->on_error = std::move(on_error);
    auto& ref = *l;
    listeners_.emplace(id, std::move(l));
    ++listeners_live_;
    arm_accept(id, ref);
    return id;
}

void Worker::arm_accept(uint32_t id, detail::Listener& l) noexcept {
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        // No SQE: treat like a resource error and retry after the pause.
        l.paused = true;
        add_timer(kAcceptPause, [id](Worker& w) {
            auto it = w.listeners_.find(id);
            if (it != w.listeners_.end() && !it->second->removed && !it->second->armed) {
                it->second->paused = false;
                w.arm_accept(id, *it->second);
            }
        });
        return;
    }
    io_uring_prep_multishot_accept(sqe, l.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, encode(Tag{id, 0, Op::Accept, 0}));
    l.armed = true;
}

void Worker::remove_listener(uint64_t id) {
    auto it = listeners_.find(static_cast<uint32_t>(id));
    if (it == listeners_.end() || it->second->removed) {
        return;
    }
    detail::Listener& l = *it->second;
    l.removed = true;
    --listeners_live_;
    if (l.armed) {
        cancel_user_data(encode(Tag{static_cast<uint32_t>(id), 0, Op::Accept, 0}));
        (void)ring_->submit();  // the cancel must run before the fd number can be reused
    }
    // Safe while an accept is still armed: io_uring holds its own file
    // reference until the cancel completes. The entry itself is erased by the
    // loop once nothing refers to it, never under a running callback.
    l.fd.reset();
}

void Worker::on_accept(const Tag& tag, const Completion& c) noexcept {
    auto it = listeners_.find(tag.slot);
    if (it == listeners_.end()) {
        if (c.res >= 0) {
            UniqueFd drop(c.res);
        }
        return;
    }
    detail::Listener& l = *it->second;
    const bool more = (c.flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
        l.armed = false;
    }
    if (l.removed) {
        if (c.res >= 0) {
            UniqueFd drop(c.res);
        }
        return;
    }
    const uint32_t id = tag.slot;
    if (c.res >= 0) {
        UniqueFd fd(c.res);
        auto peer = peer_address(fd.get());
        auto local = local_address(fd.get());
        if (!more) {
            arm_accept(id, l);  // the multishot ended (e.g. CQ overflow): continue
        }
        if (peer && local) {
            // Copy: the callback may remove this listener.
            AcceptFn fn = l.on_accept;
            fn(*this, std::move(fd), *peer, *local);
        }
        return;
    }
    const int err = -c.res;
    if (err == ECANCELED) {
        return;
    }
    const bool resource = is_resource_error(err);
    if (resource) {
        if (l.armed) {
            // Still armed: stop it, or it would post one error per connection attempt.
            cancel_user_data(encode(Tag{id, 0, Op::Accept, 0}));
        }
        if (!l.paused) {
            l.paused = true;
            add_timer(kAcceptPause, [id](Worker& w) {
                auto lit = w.listeners_.find(id);
                if (lit == w.listeners_.end() || lit->second->removed) {
                    return;
                }
                lit->second->paused = false;
                if (!lit->second->armed) {
                    w.arm_accept(id, *lit->second);
                }
            });
        }
    } else if (!l.armed && !is_fatal_accept_error(err)) {
        arm_accept(id, l);  // ECONNABORTED and the like: the next client is fine
    }
    AcceptErrorFn fn = l.on_error;
    if (fn) {
        fn(*this, err, resource);
    }
}

void Worker::cancel_user_data(uint64_t user_data) noexcept {
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        return;
    }
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Ignored, 0}));
}

// --- timers ---

uint64_t Worker::add_timer(std::chrono::milliseconds delay, UniqueFunction<void(Worker&)> fn) {
    uint32_t id = next_timer_++;
    while (id == 0 || timers_.count(id) != 0) {
        id = next_timer_++;
    }
    auto t = std::make_unique<detail::Timer>();
    t->ts = to_timespec(delay);
    t->fn = std::move(fn);
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        return 0;  // SQ refused: the timer cannot run; 0 is never a valid id
    }
    io_uring_prep_timeout(sqe, &t->ts, 0, 0);
    io_uring_sqe_set_data64(sqe, encode(Tag{id, 0, Op::Timer, 0}));
    timers_.emplace(id, std::move(t));
    return id;
}

void Worker::cancel_timer(uint64_t id) {
    auto it = timers_.find(static_cast<uint32_t>(id));
    if (it == timers_.end()) {
        return;
    }
    timers_.erase(it);
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        return;  // it fires later and finds nothing
    }
    io_uring_prep_timeout_remove(sqe, encode(Tag{static_cast<uint32_t>(id), 0, Op::Timer, 0}), 0);
    io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Ignored, 0}));
}

void Worker::on_timer(const Tag& tag, const Completion& c) noexcept {
    auto it = timers_.find(tag.slot);
    if (it == timers_.end() || c.res == -ECANCELED) {
        return;
    }
    auto fn = std::move(it->second->fn);
    timers_.erase(it);
    if (fn) {
        fn(*this);
    }
}

// --- wait_fd ---

uint64_t Worker::wait_fd(int fd, short events, std::chrono::milliseconds timeout,
                         UniqueFunction<void(Worker&, int res)> fn) {
    uint32_t id = next_waiter_++;
    while (id == 0 || waiters_.count(id) != 0) {
        id = next_waiter_++;
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        post([fn = std::move(fn)](Worker& w) mutable { fn(w, -EBUSY); });
        return 0;
    }
    io_uring_prep_poll_add(sqe, fd, static_cast<unsigned>(events));
    io_uring_sqe_set_data64(sqe, encode(Tag{id, 0, Op::WaitFd, 0}));
    auto w = std::make_unique<detail::Waiter>();
    w->fn = std::move(fn);
    if (timeout <= kNoTimeout) {
        waiters_.emplace(id, std::move(w));
        return id;
    }
    // A separate timer rather than a linked timeout: no pair of SQEs to keep
    // together, and the poll keeps its own, simple completion.
    w->timer = add_timer(timeout, [id](Worker& wk) {
        auto it = wk.waiters_.find(id);
        if (it == wk.waiters_.end()) {
            return;
        }
        auto f = std::move(it->second->fn);
        it->second->timer = 0;
        wk.cancel_wait(id);
        if (f) {
            f(wk, -ETIMEDOUT);
        }
    });
    waiters_.emplace(id, std::move(w));
    return id;
}

void Worker::cancel_wait(uint64_t id) {
    auto it = waiters_.find(static_cast<uint32_t>(id));
    if (it == waiters_.end()) {
        return;
    }
    if (it->second->timer != 0) {
        cancel_timer(it->second->timer);
    }
    waiters_.erase(it);
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        return;
    }
    io_uring_prep_poll_remove(sqe, encode(Tag{static_cast<uint32_t>(id), 0, Op::WaitFd, 0}));
    io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Ignored, 0}));
}

void Worker::on_wait(const Tag& tag, const Completion& c) noexcept {
    auto it = waiters_.find(tag.slot);
    if (it == waiters_.end()) {
        return;  // timed out or cancelled: this is the poll's -ECANCELED
    }
    auto fn = std::move(it->second->fn);
    if (it->second->timer != 0) {
        cancel_timer(it->second->timer);
    }
    waiters_.erase(it);
    if (fn) {
        fn(*this, c.res);
    }
}

}  // namespace sp::io
