// SPDX-License-Identifier: Apache-2.0
#include "io/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace sp::io {

namespace {

constexpr uint64_t kPage = 4096;

uint64_t pages(uint64_t bytes) noexcept {
    return (bytes + kPage - 1) / kPage;
}

}  // namespace

PipePool::PipePool(uint32_t pipe_size, uint32_t max_pipes, uint32_t grow_size,
                   uint64_t grow_pages) noexcept
    : pipe_size_(pipe_size),
      max_pipes_(max_pipes),
      grow_size_(grow_size),
      grow_pages_(grow_pages) {}

uint64_t PipePool::extra_pages(uint32_t size) const noexcept {
    const uint64_t have = pages(size);
    const uint64_t base = pages(pipe_size_);
    return have > base ? have - base : 0;
}

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
    int size = -1;
    if (pipe_size_ != 0) {
        size = fcntl(p.write_end.get(), F_SETPIPE_SZ, static_cast<int>(pipe_size_));
        if (size < 0) {
            ++resize_refused_;
        }
    }
    if (size < 0) {
        size = fcntl(p.write_end.get(), F_GETPIPE_SZ);
    }
    p.size = size > 0 ? static_cast<uint32_t>(size) : 4096;
    ++in_use_;
    return p;
}

void PipePool::give(Pipe pipe, bool empty) noexcept {
    if (in_use_ > 0) {
        --in_use_;
    }
    if (!empty || !pipe.read_end || !pipe.write_end) {
        grown_pages_ -= std::min(grown_pages_, extra_pages(pipe.size));
        return;  // closed by the destructors: HAProxy's kill_pipe
    }
    free_.push_back(std::move(pipe));
}

bool PipePool::grow(Pipe& pipe) noexcept {
    if (grow_size_ <= pipe.size || !pipe.write_end) {
        return false;
    }
    const uint64_t before = extra_pages(pipe.size);
    if (grown_pages_ - before + extra_pages(grow_size_) > grow_pages_) {
        return false;
    }
    const int size = fcntl(pipe.write_end.get(), F_SETPIPE_SZ, static_cast<int>(grow_size_));
    if (size <= 0) {
        ++resize_refused_;
        return false;
    }
    pipe.size = static_cast<uint32_t>(size);
    grown_pages_ = grown_pages_ - before + extra_pages(pipe.size);
    return true;
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
    const uint64_t pages_per_pipe = std::max<uint64_t>(1, pages(pipe_size));
    const uint64_t cap = soft / 4 / pages_per_pipe / workers;
    return static_cast<uint32_t>(std::clamp<uint64_t>(cap, 16, 1024));
}

uint64_t pipe_grow_pages_per_worker(unsigned workers) noexcept {
    const uint64_t soft = pipe_user_pages_soft();
    if (workers == 0) {
        return 0;
    }
    if (soft == 0) {
        return pages(uint64_t{64} << 20);
    }
    return soft / 4 / workers;
}

}  // namespace sp::io
