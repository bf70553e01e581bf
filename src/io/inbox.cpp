// SPDX-License-Identifier: Apache-2.0
#include "io/inbox.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace sp::io {

Result<Inbox> Inbox::create() {
    UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!fd) {
        return errno_error("eventfd");
    }
    return Inbox(std::move(fd));
}

void Inbox::post(UniqueFunction<void()> fn) {
    {
        const std::lock_guard lock(mu_);
        queue_.push_back(std::move(fn));
    }
    const uint64_t one = 1;
    // EAGAIN means the counter is saturated: the owner is woken anyway.
    (void)!::write(fd_.get(), &one, sizeof one);
}

void Inbox::drain() {
    uint64_t n = 0;
    (void)!::read(fd_.get(), &n, sizeof n);
    std::vector<UniqueFunction<void()>> batch;
    {
        const std::lock_guard lock(mu_);
        batch.swap(queue_);
    }
    for (auto& fn : batch) {
        if (fn) {
            fn();
        }
    }
}

}  // namespace sp::io
