// SPDX-License-Identifier: Apache-2.0
// A small epoll loop with timers for the control plane: a few hundred
// connections that speak TLS, where readiness callbacks are simpler than
// io_uring and nothing is on the data path. Single-threaded: every method
// must be called from the thread that runs the loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace sp {

class Poller final {
public:
    using Clock = std::chrono::steady_clock;
    using FdFn = std::function<void(uint32_t events)>;
    using TimerFn = std::function<void()>;

    [[nodiscard]] static Result<Poller> create();

    Poller(Poller&&) noexcept = default;
    Poller& operator=(Poller&&) noexcept = default;
    Poller(const Poller&) = delete;
    Poller& operator=(const Poller&) = delete;
    ~Poller() = default;

    /// Watches `fd` (not owned) for EPOLLIN/EPOLLOUT/...; `fn` gets the
    /// ready events. Fails with the errno of epoll_ctl.
    [[nodiscard]] Result<void> add(int fd, uint32_t events, FdFn fn);
    /// Changes the events of a watched fd; a no-op for an unknown fd.
    void modify(int fd, uint32_t events) noexcept;
    /// Stops watching `fd`. Safe from inside any callback, including the
    /// fd's own: the handler is destroyed only after dispatch finishes.
    void remove(int fd) noexcept;
    [[nodiscard]] bool watching(int fd) const noexcept { return fds_.contains(fd); }

    /// Runs `fn` once, `after` from now. Ids are never reused.
    uint64_t add_timer(std::chrono::milliseconds after, TimerFn fn);
    void cancel_timer(uint64_t id) noexcept;

    /// Waits for readiness or the next timer, at most `max_wait`, then runs
    /// the due callbacks. Returns the number of callbacks run.
    int run_once(std::chrono::milliseconds max_wait);

private:
    Poller() = default;

    struct Watch {
        uint32_t generation = 0;
        std::unique_ptr<FdFn> fn;
    };

    UniqueFd epfd_;
    uint32_t next_generation_ = 1;
    std::unordered_map<int, Watch> fds_;
    std::vector<std::unique_ptr<FdFn>> graveyard_;
    uint64_t next_timer_ = 1;
    std::multimap<Clock::time_point, uint64_t> deadlines_;
    std::unordered_map<uint64_t, TimerFn> timers_;
};

}  // namespace sp
