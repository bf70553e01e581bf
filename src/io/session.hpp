// SPDX-License-Identifier: Apache-2.0
// Internal to io: the per-session and per-listener state a Worker owns.
// Only worker.cpp and splice_pump.cpp include it.
#pragma once

#include <linux/time_types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include "base/unique_fd.hpp"
#include "base/unique_function.hpp"
#include "io/buffer_pool.hpp"
#include "io/pipe_pool.hpp"
#include "io/worker.hpp"

namespace sp::io::detail {

/// One direction of a session: reads fd[d], writes fd[1 - d] (d 0 = up).
/// Bytes in flight sit in `pipe` (splice) or `buf` (copy); both are held only
/// while `held` > 0 or a fill is about to happen, so an idle session holds neither.
struct Direction {
    std::optional<Pipe> pipe;
    Buffer buf;
    uint32_t held = 0;           // bytes read from the source, not yet written
    uint32_t buf_off = 0;        // copy path: start of `held` in `buf`
    bool readable = false;       // readiness seen and no EAGAIN from the source since
    bool read_eof = false;       // the source sent FIN
    bool done = false;           // FIN passed on with shutdown(SHUT_WR)
    bool write_blocked = false;  // destination full: a POLLOUT is armed
    bool copy = false;           // recv/send syscalls instead of splice
    bool uring = false;          // io_uring RECV/SEND with a provided buffer
    bool recv_inflight = false;
    bool send_inflight = false;
    // uring: filled provided buffers in arrival order. The head is being sent
    // (`held` bytes left at buf_off); a RECV into the next one overlaps that
    // SEND, so the source is read while the destination drains.
    static constexpr uint8_t kMaxBufs = 2;
    uint16_t bids[kMaxBufs] = {};
    uint32_t lens[kMaxBufs] = {};
    uint8_t nbufs = 0;
    bool deferred = false;  // queued to continue after its budget ran out
    uint64_t bytes = 0;
};

struct Session {
    UniqueFd fd[2];  // 0 = client, 1 = peer
    Direction dir[2];
    Worker::CloseFn on_close;
    uint32_t idle_timeout_s = 0;
    std::chrono::steady_clock::time_point start;
    std::chrono::steady_clock::time_point last_activity;
    uint32_t inflight = 0;  // SQEs whose final CQE has not arrived
    bool poll_in_armed[2] = {false, false};
    bool poll_out_armed[2] = {false, false};
    bool closing = false;
};

struct Listener {
    UniqueFd fd;
    Worker::AcceptFn on_accept;
    Worker::AcceptErrorFn on_error;
    bool armed = false;    // a multishot accept is in flight
    bool removed = false;  // remove_listener ran; erased once !armed
    bool paused = false;   // a re-arm timer is pending
};

struct Timer {
    __kernel_timespec ts{};  // read by the kernel at submit; kept for clarity
    UniqueFunction<void(Worker&)> fn;
};

struct Waiter {
    UniqueFunction<void(Worker&, int)> fn;
    uint64_t timer = 0;
};

}  // namespace sp::io::detail
