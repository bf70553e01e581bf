// SPDX-License-Identifier: Apache-2.0
#include "io/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace sp::io {

PipePool::PipePool(uint32_t pipe_size, uint32_t max_pipes) noexcept
    : pipe_size_(pipe_size), max_pipes_(max_pipes) {}

std::optional<Pipe> PipePool::take() noexcept {
    if (!free_.empty()) {
        Pipe p = std::move(free_.back());
        free_.pop_back();
        ++in_use_;
        return p;
    }
    if (in_use_ + free_.size() >= max_pipes_) {
        return std::nullopt;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        return std::nullopt;
    }
    Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
    // Past pipe-user-pages-soft the kernel refuses growth with EPERM (and
    // already hands out one-page pipes); past pipe-max-size, also EPERM.
    // A smaller pipe only means more splice calls, so keep it.
    if (pipe_size_ != 0 &&
        fcntl(p.write_end.get(), F_SETPIPE_SZ, static_cast<int>(pipe_size_)) < 0) {
        ++resize_refused_;
    }
    ++in_use_;
    return p;
}

void PipePool::give(Pipe pipe, bool empty) noexcept {
    if (in_use_ > 0) {
        --in_use_;
    }
    if (!empty || !pipe.read_end || !pipe.write_end) {
        return;  // closed by the destructors: HAProxy's kill_pipe
    }
    free_.push_back(std::move(pipe));
}

uint64_t pipe_user_pages_soft() noexcept {
    FILE* f = std::fopen("/proc/sys/fs/pipe-user-pages-soft", "re");
    if (f == nullptr) {
        return 0;
    }
    unsigned long long v = 0;
    if (std::fscanf(f, "%llu", &v) != 1) {
        v = 0;
    }
    std::fclose(f);
    return v;
}

uint32_t pipe_cap_per_worker(unsigned workers, uint32_t pipe_size) noexcept {
    const uint64_t soft = pipe_user_pages_soft();
    if (soft == 0 || workers == 0) {
        return 1024;
    }
    const uint64_t pages_per_pipe = std::max<uint64_t>(1, (pipe_size + 4095) / 4096);
    const uint64_t cap = soft / 2 / pages_per_pipe / workers;
    return static_cast<uint32_t>(std::clamp<uint64_t>(cap, 16, 1024));
}

}  // namespace sp::io
