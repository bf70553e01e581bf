// SPDX-License-Identifier: Apache-2.0
// The reactor: thread, ring loop, CQE dispatch by Op, inbox, timers, wait_fd.
#include "io/worker.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "base/assert.hpp"
#include "io/classify.hpp"
#include "io/listener.hpp"
#include "io/pump.hpp"
#include "io/timer_list.hpp"

namespace sp::io {

namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned kBatch = 256;
// A zero option means "the default": the value WorkerOptions itself declares.
constexpr WorkerOptions kDefaults{};
// Idle timeouts are checked on this coarse tick.
constexpr std::chrono::seconds kTick{1};
// While something waits for an SQE or a resource, the loop wakes at least
// this often to try again, even with nothing else to do.
constexpr std::chrono::milliseconds kRetryDelay{10};

}  // namespace

struct Worker::Waiter {
    int fd = -1;
    short events = 0;
    UniqueFunction<void(Worker&, int)> fn;
    uint64_t timer = 0;
    bool armed = false;   // the poll is in flight
    bool queued = false;  // on unarmed_waiters_
};

Result<std::unique_ptr<Worker>> Worker::create(const WorkerOptions& options) {
    const unsigned entries =
        options.ring_entries == 0 ? kDefaults.ring_entries : options.ring_entries;
    // A CQ four times the SQ: multishot polls and accepts post many CQEs per SQE.
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
      timers_(std::make_unique<TimerList>()),
      ring_(std::move(ring)),
      event_fd_(std::move(event_fd)) {
    pump_ = std::make_unique<SessionPump>(*this, *ring_, options_, stats_);
    listeners_ = std::make_unique<Listeners>(*this, *ring_, *timers_, stats_);
}

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
    if (loop_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
        local_posts_.push_back(std::move(fn));  // run before the loop next waits
        return;
    }
    {
        std::lock_guard<std::mutex> lock(inbox_mutex_);
        inbox_.push_back(std::move(fn));
    }
    if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
        uint64_t one = 1;
        (void)!write(event_fd_.get(), &one, sizeof(one));
    }
}

// --- delegation to the parts ---

uint64_t Worker::add_listener(UniqueFd listening_fd, AcceptFn on_accept, AcceptErrorFn on_error) {
    return listeners_->add(std::move(listening_fd), std::move(on_accept), std::move(on_error));
}

void Worker::remove_listener(uint64_t id) {
    listeners_->remove(id);
}

size_t Worker::listener_count() const noexcept {
    return listeners_->live();
}

SessionId Worker::start_session(UniqueFd client, UniqueFd peer, CloseFn on_close,
                                uint32_t idle_timeout_s) {
    return pump_->start(std::move(client), std::move(peer), std::move(on_close), idle_timeout_s);
}

void Worker::close_session(SessionId id, std::string_view reason) {
    pump_->close(id, reason);
}

size_t Worker::session_count() const noexcept {
    return pump_->open();
}

std::optional<SessionProgress> Worker::session_progress(SessionId id) const noexcept {
    return pump_->progress(id);
}

const PipePool& Worker::pipe_pool() const noexcept {
    return pump_->pipes();
}

const BufferPool& Worker::buffer_pool() const noexcept {
    return pump_->buffers();
}

size_t Worker::buffers_in_use() const noexcept {
    return pump_->buffers_in_use();
}

void Worker::set_data_path(DataPath path) noexcept {
    options_.data_path = path;
    pump_->register_buffers();  // nothing unless Copy and not registered yet
}

bool Worker::uring_copy() const noexcept {
    return pump_->uring();
}

uint64_t Worker::add_timer(std::chrono::milliseconds delay, UniqueFunction<void(Worker&)> fn) {
    return timers_->add(Clock::now() + std::max(delay, std::chrono::milliseconds{0}),
                        std::move(fn));
}

void Worker::cancel_timer(uint64_t id) {
    (void)timers_->cancel(id);
}

// --- the loop ---

void Worker::run() noexcept {
    const std::string name = "sp-worker-" + std::to_string(options_.index);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    // splice(pipe -> socket) has no MSG_NOSIGNAL: a peer that vanished would
    // raise SIGPIPE. Blocked here, it stays pending on this thread and the
    // call returns EPIPE, which the pump handles.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);

    if (ring_->enable() < 0) {
        return;
    }
    pump_->register_buffers();
    (void)timers_->add(Clock::now() + kTick, [](Worker& w) { w.on_tick(); });
    drain_inbox();

    Completion batch[kBatch];
    bool closed_all = false;
    while (true) {
        if (stop_now_.load() && !closed_all) {
            closed_all = true;
            pump_->close_all(to_string(EndReason::Closed));
            cancel_all_waits();
        }
        if (stop_requested_.load() && (pump_->open() == 0 || stop_now_.load())) {
            break;
        }
        (void)timers_->run_due(Clock::now(), *this);
        // Whatever the SQ refused earlier: every part tries again each turn
        // (not only on a tick), and the wait below is short while any waits.
        bool starved = false;
        if (!arm_inbox()) {
            // No poll tells us about posts: look at the queue each turn.
            starved = true;
            drain_inbox();
        }
        starved = listeners_->retry() || starved;
        starved = pump_->retry() || starved;
        starved = arm_waiters() || starved;
        starved = ring_->flush_cancels() || starved;
        pump_->run_deferred();
        const bool more_posts = run_local_posts();

        // With work left over from a budget, only collect what is ready.
        // Otherwise sleep until a CQE, the next timer, or a retry is due.
        if (pump_->has_deferred() || more_posts) {
            (void)ring_->submit_and_get_events();
        } else {
            std::chrono::nanoseconds wait = kTick;
            if (const auto next = timers_->next()) {
                wait = std::min<std::chrono::nanoseconds>(wait, *next - Clock::now());
            }
            if (starved) {
                wait = std::min<std::chrono::nanoseconds>(wait, kRetryDelay);
            }
            // -ETIME, -EINTR, -EBUSY: just drain and go round again.
            (void)ring_->submit_and_wait_for(wait);
        }
        unsigned n;
        do {
            n = ring_->drain(batch, kBatch);
            for (unsigned i = 0; i < n; ++i) {
                dispatch(batch[i]);
            }
        } while (n == kBatch);
        listeners_->collect();
    }
    (void)ring_->submit();
}

void Worker::dispatch(const Completion& c) noexcept {
    const Tag tag = decode(c.user_data);
    switch (tag.op) {
        case Op::PollIn:
        case Op::PollOut:
        case Op::Watch:
        case Op::Recv:
        case Op::Send:
            pump_->on_completion(tag, c);
            return;
        case Op::Accept:
            listeners_->on_accept(tag, c);
            return;
        case Op::Inbox:
            if ((c.flags & IORING_CQE_F_MORE) == 0) {
                inbox_armed_ = false;  // armed again at the top of the loop
            }
            drain_inbox();
            return;
        case Op::WaitFd:
            on_wait(tag, c);
            return;
        case Op::Cancel:
            return;  // -ENOENT/-EALREADY: the target had finished; nothing to do
        case Op::None:
        case Op::SpliceIn:
        case Op::SpliceOut:
        case Op::RecvCall:
        case Op::SendCall:
            break;
    }
    ++stats_.bugs;
    SP_BUG("a CQE carries a tag we never build");
}

bool Worker::arm_inbox() noexcept {
    if (inbox_armed_) {
        return true;
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        ++stats_.sqe_refused;
        return false;
    }
    io_uring_prep_poll_multishot(sqe, event_fd_.get(), POLLIN);
    io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Inbox, 0}));
    inbox_armed_ = true;
    // Posts that raced the arm are in the queue already: take them now.
    drain_inbox();
    return true;
}

void Worker::drain_inbox() noexcept {
    (void)!read(event_fd_.get(), &inbox_value_, sizeof(inbox_value_));
    // Cleared before the queue is taken: a post that misses this drain
    // finds the flag clear and wakes us again.
    wake_pending_.store(false, std::memory_order_release);
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

bool Worker::run_local_posts() noexcept {
    if (local_posts_.empty()) {
        return false;
    }
    std::vector<UniqueFunction<void(Worker&)>> work;
    work.swap(local_posts_);
    for (auto& fn : work) {
        if (fn) {
            fn(*this);
        }
    }
    return !local_posts_.empty();
}

void Worker::on_tick() noexcept {
    (void)timers_->add(Clock::now() + kTick, [](Worker& w) { w.on_tick(); });
    pump_->close_idle(Clock::now());
    listeners_->sweep();
}

// --- wait_fd ---

uint64_t Worker::wait_fd(int fd, short events, std::chrono::milliseconds timeout,
                         UniqueFunction<void(Worker&, int res)> fn) {
    uint32_t id = next_waiter_++;
    while (id == 0 || waiters_.count(id) != 0) {
        id = next_waiter_++;
    }
    auto w = std::make_unique<Waiter>();
    w->fd = fd;
    w->events = events;
    w->fn = std::move(fn);
    // A timer of our own rather than a linked timeout: no pair of SQEs to
    // keep together, and it runs even if the poll had to wait for an SQE.
    // kNoTimeout: none at all (an idle pooled channel waits for days).
    if (timeout > kNoTimeout) {
        w->timer = add_timer(timeout, [id](Worker& wk) {
            const auto it = wk.waiters_.find(id);
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
    }
    Waiter& ref = *w;
    waiters_.emplace(id, std::move(w));
    if (!arm_wait(id, ref)) {
        ref.queued = true;
        unarmed_waiters_.push_back(id);
    }
    return id;
}

bool Worker::arm_wait(uint32_t id, Waiter& w) noexcept {
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        ++stats_.sqe_refused;
        return false;
    }
    io_uring_prep_poll_add(sqe, w.fd, static_cast<unsigned>(w.events));
    io_uring_sqe_set_data64(sqe, encode(Tag{id, 0, Op::WaitFd, 0}));
    w.armed = true;
    return true;
}

bool Worker::arm_waiters() noexcept {
    if (unarmed_waiters_.empty()) {
        return false;
    }
    std::vector<uint32_t> ids;
    ids.swap(unarmed_waiters_);
    for (uint32_t id : ids) {
        const auto it = waiters_.find(id);
        if (it == waiters_.end()) {
            continue;  // timed out or cancelled meanwhile
        }
        it->second->queued = false;
        if (!it->second->armed && !arm_wait(id, *it->second)) {
            it->second->queued = true;
            unarmed_waiters_.push_back(id);
        }
    }
    return !unarmed_waiters_.empty();
}

void Worker::cancel_wait(uint64_t id) {
    const auto it = waiters_.find(static_cast<uint32_t>(id));
    if (it == waiters_.end()) {
        return;
    }
    if (it->second->timer != 0) {
        cancel_timer(it->second->timer);
    }
    const bool armed = it->second->armed;
    waiters_.erase(it);
    if (armed) {
        // Its -ECANCELED finds no waiter and is dropped.
        ring_->cancel(encode(Tag{static_cast<uint32_t>(id), 0, Op::WaitFd, 0}));
    }
}

void Worker::on_wait(const Tag& tag, const Completion& c) noexcept {
    const auto it = waiters_.find(tag.slot);
    if (it == waiters_.end()) {
        return;  // timed out or cancelled: this is the poll's -ECANCELED
    }
    it->second->armed = false;
    if (c.res < 0 && classify(Op::WaitFd, c.res) == Fault::Retry) {
        // Not our cancel (the waiter is still here): arm again.
        if (!arm_wait(tag.slot, *it->second) && !it->second->queued) {
            it->second->queued = true;
            unarmed_waiters_.push_back(tag.slot);
        }
        return;
    }
    auto fn = std::move(it->second->fn);
    if (it->second->timer != 0) {
        cancel_timer(it->second->timer);
    }
    waiters_.erase(it);
    if (fn) {
        fn(*this, c.res);  // revents, or -errno for a poll on a bad fd
    }
}

void Worker::cancel_all_waits() noexcept {
    std::vector<uint32_t> ids;
    ids.reserve(waiters_.size());
    for (const auto& [id, w] : waiters_) {
        ids.push_back(id);
    }
    for (uint32_t id : ids) {
        const auto it = waiters_.find(id);
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

}  // namespace sp::io
