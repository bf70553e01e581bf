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
    uint32_t size = 0;  // capacity in bytes, as the kernel reports it
};

/// Not thread-safe: one per worker.
class PipePool final {
public:
    /// `pipe_size`: F_SETPIPE_SZ target (0 = kernel default); `max_pipes`:
    /// cap on pipes alive at once (taken + cached). `grow_size` and
    /// `grow_pages`: grow() may enlarge pipes to `grow_size` bytes while the
    /// pages added by growing, over all pipes alive, stay within `grow_pages`
    /// (0 = never grow).
    PipePool(uint32_t pipe_size, uint32_t max_pipes, uint32_t grow_size = 0,
             uint64_t grow_pages = 0) noexcept;

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

    /// Enlarges `pipe` to grow_size if the grow budget allows; false when it
    /// does not, when the pipe is that big already, or when the kernel
    /// refuses. For a direction that moves bulk (half a pipe or more per
    /// splice): a bigger pipe moves the same bytes in fewer splices and wakeups (on
    /// loopback 1 MiB instead of 256 KiB cut relay CPU per GB by about a
    /// fifth), but costs 4x the pipe pages, so only busy directions get one.
    bool grow(Pipe& pipe) noexcept;

    [[nodiscard]] size_t in_use() const noexcept { return in_use_; }
    [[nodiscard]] size_t cached() const noexcept { return free_.size(); }
    [[nodiscard]] uint32_t max_pipes() const noexcept { return max_pipes_; }
    /// Count of pipes whose F_SETPIPE_SZ was refused.
    [[nodiscard]] uint64_t resize_refused() const noexcept { return resize_refused_; }
    /// Pages that grown pipes alive (taken or cached) hold beyond pipe_size.
    [[nodiscard]] uint64_t grown_pages() const noexcept { return grown_pages_; }

private:
    /// Pages a pipe of `size` bytes holds beyond pipe_size.
    [[nodiscard]] uint64_t extra_pages(uint32_t size) const noexcept;

    uint32_t pipe_size_;
    uint32_t max_pipes_;
    uint32_t grow_size_;
    uint64_t grow_pages_;
    uint64_t grown_pages_ = 0;
    size_t in_use_ = 0;
    uint64_t resize_refused_ = 0;
    std::vector<Pipe> free_;
};

/// /proc/sys/fs/pipe-user-pages-soft, or 0 when unreadable or unlimited.
[[nodiscard]] uint64_t pipe_user_pages_soft() noexcept;

/// How many pipes of `pipe_size` bytes one of `workers` workers may keep
/// so that all of them together stay within a quarter of
/// pipe-user-pages-soft: another quarter is for growing busy pipes
/// (pipe_grow_pages_per_worker) and half is left for other processes of the
/// same user (an agent on the same host, tools). Past the soft limit the
/// kernel hands out 8 KiB pipes, which would crawl. At least 16, at most
/// 1024; 1024 when unlimited.
[[nodiscard]] uint32_t pipe_cap_per_worker(unsigned workers, uint32_t pipe_size) noexcept;

/// The pages one of `workers` workers may add by growing pipes: a quarter of
/// pipe-user-pages-soft over all workers; 64 MiB worth when unlimited.
[[nodiscard]] uint64_t pipe_grow_pages_per_worker(unsigned workers) noexcept;

}  // namespace sp::io
