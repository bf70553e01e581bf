// SPDX-License-Identifier: Apache-2.0
// Inbox: how other threads hand work to a thread that runs an epoll loop
// (the daemons' control threads). A mutex-guarded queue plus an eventfd that
// the owner watches; workers have their own ring-driven inbox (Worker::post).
#pragma once

#include <mutex>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "base/unique_function.hpp"

namespace sp::io {

class Inbox final {
public:
    /// Creates the eventfd (non-blocking, close-on-exec).
    [[nodiscard]] static Result<Inbox> create();

    Inbox(Inbox&& o) noexcept : fd_(std::move(o.fd_)), queue_(std::move(o.queue_)) {}
    Inbox& operator=(Inbox&&) = delete;
    Inbox(const Inbox&) = delete;
    Inbox& operator=(const Inbox&) = delete;
    ~Inbox() = default;

    /// Any thread: queues `fn` to run on the owner thread, in posting order,
    /// and wakes it. Never blocks beyond the queue's mutex.
    void post(UniqueFunction<void()> fn);

    /// The fd the owner watches for EPOLLIN.
    [[nodiscard]] int fd() const noexcept { return fd_.get(); }

    /// Owner thread: runs everything queued so far. Functions posted while it
    /// runs wait for the next wake-up, so a function that posts cannot starve
    /// the loop.
    void drain();

private:
    explicit Inbox(UniqueFd fd) : fd_(std::move(fd)) {}

    UniqueFd fd_;
    std::mutex mu_;
    std::vector<UniqueFunction<void()>> queue_;  // guarded by mu_
};

}  // namespace sp::io
