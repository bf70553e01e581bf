// SPDX-License-Identifier: Apache-2.0
#include "base/poller.hpp"

#include <sys/epoll.h>

#include <algorithm>

namespace sp {

Result<Poller> Poller::create() {
    Poller p;
    p.epfd_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!p.epfd_) {
        return errno_error("epoll_create1");
    }
    return p;
}

Result<void> Poller::add(int fd, uint32_t events, FdFn fn) {
    const uint32_t gen = next_generation_++;
    epoll_event ev{};
    ev.events = events;
    // The generation in the tag lets dispatch skip events of an fd that was
    // removed and re-added (a new socket with the same number) in one batch.
    ev.data.u64 = (static_cast<uint64_t>(gen) << 32) | static_cast<uint32_t>(fd);
    if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        return errno_error("epoll_ctl(ADD, {})", fd);
    }
    fds_[fd] = Watch{gen, std::make_unique<FdFn>(std::move(fn))};
    return {};
}

void Poller::modify(int fd, uint32_t events) noexcept {
    const auto it = fds_.find(fd);
    if (it == fds_.end()) {
        return;
    }
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = (static_cast<uint64_t>(it->second.generation) << 32) | static_cast<uint32_t>(fd);
    (void)::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev);  // only fails for fds we do not watch
}

void Poller::remove(int fd) noexcept {
    const auto it = fds_.find(fd);
    if (it == fds_.end()) {
        return;
    }
    (void)::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);  // the fd may be closed already
    graveyard_.push_back(std::move(it->second.fn));
    fds_.erase(it);
}

uint64_t Poller::add_timer(std::chrono::milliseconds after, TimerFn fn) {
    const uint64_t id = next_timer_++;
    deadlines_.emplace(Clock::now() + after, id);
    timers_.emplace(id, std::move(fn));
    return id;
}

void Poller::cancel_timer(uint64_t id) noexcept {
    // The deadline entry stays behind and is skipped when it comes due.
    timers_.erase(id);
}

int Poller::run_once(std::chrono::milliseconds max_wait) {
    auto wait = max_wait;
    if (!deadlines_.empty()) {
        const auto until =
            std::chrono::ceil<std::chrono::milliseconds>(deadlines_.begin()->first - Clock::now());
        wait = std::clamp(until, std::chrono::milliseconds(0), max_wait);
    }
    epoll_event events[64];
    const int n = ::epoll_wait(epfd_.get(), events, 64, static_cast<int>(wait.count()));
    int ran = 0;
    for (int i = 0; i < n; ++i) {
        const int fd = static_cast<int>(events[i].data.u64 & 0xffffffffU);
        const auto gen = static_cast<uint32_t>(events[i].data.u64 >> 32);
        const auto it = fds_.find(fd);
        if (it == fds_.end() || it->second.generation != gen) {
            continue;  // removed by an earlier callback in this batch
        }
        FdFn* fn = it->second.fn.get();
        (*fn)(events[i].events);
        ++ran;
    }
    const auto now = Clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        const uint64_t id = deadlines_.begin()->second;
        deadlines_.erase(deadlines_.begin());
        const auto it = timers_.find(id);
        if (it == timers_.end()) {
            continue;
        }
        TimerFn fn = std::move(it->second);
        timers_.erase(it);
        fn();
        ++ran;
    }
    graveyard_.clear();
    return ran;
}

}  // namespace sp
