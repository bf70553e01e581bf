// SPDX-License-Identifier: Apache-2.0
// PipePool: a worker's cache of splice pipes (HAProxy pipe.c). Pipes are taken
// only while data is in flight, so idle sessions hold none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/unique_fd.hpp"

namespace sp::io {

struct Pipe {
    UniqueFd read_end;
    UniqueFd write_end;
};

/// Not thread-safe: one per worker.
class PipePool final {
public:
    /// `pipe_size`: F_SETPIPE_SZ target (0 = kernel default); `max_pipes`:
    /// cap on pipes alive at once (taken + cached).
    PipePool(uint32_t pipe_size, uint32_t max_pipes) noexcept;

    /// A cached pipe, or a new O_NONBLOCK|O_CLOEXEC one. When F_SETPIPE_SZ is
    /// refused (EPERM: pipe-user-pages-soft reached, or size above
    /// pipe-max-size) the pipe keeps its default size; that is not an error.
    /// Returns nullopt when the cap is reached or pipe2 fails (EMFILE...):
    /// the caller then copies through a buffer instead. Never blocks.
    [[nodiscard]] std::optional<Pipe> take() noexcept;

    /// Returns a pipe. An empty pipe is cached; a pipe that may still hold
    /// bytes (`empty` false) is closed, because stale bytes must never reach
    /// another session.
    void give(Pipe pipe, bool empty) noexcept;

    [[nodiscard]] size_t in_use() const noexcept { return in_use_; }
    [[nodiscard]] size_t cached() const noexcept { return free_.size(); }
    [[nodiscard]] uint32_t max_pipes() const noexcept { return max_pipes_; }
    /// Count of pipes whose F_SETPIPE_SZ was refused.
    [[nodiscard]] uint64_t resize_refused() const noexcept { return resize_refused_; }

private:
    uint32_t pipe_size_;
    uint32_t max_pipes_;
    size_t in_use_ = 0;
    uint64_t resize_refused_ = 0;
    std::vector<Pipe> free_;
};

/// /proc/sys/fs/pipe-user-pages-soft, or 0 when unreadable or unlimited.
[[nodiscard]] uint64_t pipe_user_pages_soft() noexcept;

/// How many pipes of `pipe_size` bytes one of `workers` workers may keep
/// so that all of them together stay within pipe-user-pages-soft, with half
/// of the budget left for other processes of the same user (an agent on the
/// same host, tools). At least 16, at most 1024; 1024 when unlimited.
[[nodiscard]] uint32_t pipe_cap_per_worker(unsigned workers, uint32_t pipe_size) noexcept;

}  // namespace sp::io
