// SPDX-License-Identifier: Apache-2.0
// Worker: one thread, one io_uring, the sessions it owns and the splice/copy
// pump that moves their bytes. Other threads reach it only through post().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "base/unique_function.hpp"
#include "io/buf_ring.hpp"
#include "io/buffer_pool.hpp"
#include "io/net.hpp"
#include "io/op.hpp"
#include "io/pipe_pool.hpp"
#include "io/ring.hpp"
#include "io/session_table.hpp"

namespace sp::io {

enum class DataPath { Splice, Copy };

/// Worker::wait_fd without a deadline (an idle pooled channel may wait for days).
inline constexpr std::chrono::milliseconds kNoTimeout{0};

struct WorkerOptions {
    unsigned index = 0;
    DataPath data_path = DataPath::Splice;
    // 256 KiB: a quarter of the syscalls of 64 KiB pipes per byte moved. In
    // one bench run on 2 cores it lifted splice from 0.75x to about parity
    // with the HAProxy chain.
    uint32_t pipe_size = 262144;
    uint32_t max_pipes = 1024;
    // A direction whose splice moves half its pipe or more in one call gets
    // the pipe grown to this size while the worker's grow budget (pages) lasts: 1 MiB cut relay CPU
    // per GB by about a fifth against 256 KiB but costs 4x the pipe pages,
    // so only busy directions get one (pipe_grow_pages_per_worker).
    uint32_t pipe_grow_size = 1048576;
    uint64_t pipe_grow_pages = 2048;
    // 256 KiB: on loopback 64 KiB buffers moved 0.7x the HAProxy chain and
    // 256 KiB about 0.9x, in the same run (a RECV per 64 KiB is four CQE
    // round trips where one would do). 1 MiB gained little more and holds 4x
    // the memory.
    uint32_t copy_buffer_size = 262144;
    // recv/send fallback (no buffer ring, a socket that refuses splice, or
    // the pipe budget spent): one buffer per busy direction, held while its
    // bytes are in flight. Kept at 64 KiB because it is the path taken when
    // many sessions are busy at once.
    uint32_t fallback_buffer_size = 65536;
    uint32_t ring_entries = 4096;
    /// DataPath::Copy: provided buffers per worker (rounded up to a power of
    /// two); a direction holds at most two (one being sent, one being filled).
    /// Only sessions with bytes in flight hold any; when all are taken a RECV
    /// waits for the next one given back. The kernel takes them in ring order,
    /// so after enough traffic all of them are resident: 128 x 256 KiB = 32 MiB
    /// per worker at most.
    uint32_t copy_buffers = 128;
};

/// What a finished session reports. `reason` points to a static string:
/// "eof" (both sides finished cleanly), "reset-by-client", "reset-by-peer",
/// "idle-timeout", "closed" (close_session/stop_now; or the caller's reason),
/// "error".
struct SessionEnd {
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    std::chrono::milliseconds duration{};
    std::string_view reason;
};

/// Counters for tests and status; read on the worker thread.
struct WorkerStats {
    uint64_t stale_completions = 0;  // CQEs dropped because their generation moved on
    uint64_t splice_fallbacks = 0;   // directions that fell back to recv/send
    uint64_t pipe_exhausted = 0;     // fills that used a buffer because no pipe was free
    uint64_t recv_no_buffer = 0;     // copy path: RECVs that found the buffer ring empty
};

namespace detail {
struct Session;
struct Listener;
struct Timer;
struct Waiter;
}  // namespace detail

class Worker final {
    struct Private {  // passkey: only create() can construct one
        explicit Private() = default;
    };

public:
    /// Creates the ring (disabled until start()), the eventfd and the pools.
    /// Errors: io_uring unavailable (ENOSYS/EPERM), fd or memory limits.
    [[nodiscard]] static Result<std::unique_ptr<Worker>> create(const WorkerOptions& options);
    Worker(const Private&, const WorkerOptions& options, std::unique_ptr<Ring> ring,
           UniqueFd event_fd);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    /// Spawns the thread ("sp-worker-N"). Call once. The thread blocks
    /// SIGPIPE for itself: splice(2) has no MSG_NOSIGNAL, so a vanished
    /// reader surfaces as EPIPE instead of killing the process.
    void start();
    /// Thread-safe. The loop exits once stop was requested AND no session is
    /// left (or stop_now() was called). Listeners are not touched: remove them first.
    void request_stop();
    /// Thread-safe: closes every session (reason "closed"), then exits.
    void stop_now();
    /// Waits for the thread to exit. Call after request_stop/stop_now.
    void join();
    /// Thread-safe: runs `fn` on the worker thread, in posting order. Functions
    /// posted after the loop exited are destroyed without running.
    void post(UniqueFunction<void(Worker&)> fn);

    // --- worker thread only: from other threads, wrap calls in post() ---

    using AcceptFn = std::function<void(Worker&, UniqueFd client, const SocketAddress& peer,
                                        const SocketAddress& local)>;
    /// err is a positive errno. paused: a resource error (EMFILE, ENFILE,
    /// ENOBUFS, ENOMEM); accepting resumes by itself after ~100 ms.
    using AcceptErrorFn = std::function<void(Worker&, int err, bool paused)>;
    /// Starts a multishot accept on `listening_fd` (non-blocking). Returns the
    /// listener id for remove_listener.
    uint64_t add_listener(UniqueFd listening_fd, AcceptFn on_accept, AcceptErrorFn on_error);
    /// Stops accepting and closes the fd; established sessions are unaffected.
    void remove_listener(uint64_t id);
    [[nodiscard]] size_t listener_count() const noexcept { return listeners_live_; }

    using CloseFn = std::function<void(Worker&, SessionId, const SessionEnd&)>;
    /// Takes both connected, non-blocking sockets and moves bytes both ways
    /// (client->peer is "up") until both sides finished or one failed.
    /// `on_close` runs exactly once, on this thread, when the session ends.
    /// `idle_timeout_s`: 0 = none; checked on a 1 s tick, so it fires within
    /// [timeout, timeout + 1 s] of the last byte.
    SessionId start_session(UniqueFd client, UniqueFd peer, CloseFn on_close,
                            uint32_t idle_timeout_s);
    /// Abortive close (RST to both sides); on_close gets `reason`, which must
    /// outlive the callback (use a string literal). No-op for a stale id.
    void close_session(SessionId id, std::string_view reason);
    /// Open sessions (closing ones not counted).
    [[nodiscard]] size_t session_count() const noexcept { return open_sessions_; }

    /// Runs `fn` once after `delay`. Returns an id for cancel_timer.
    uint64_t add_timer(std::chrono::milliseconds delay, UniqueFunction<void(Worker&)> fn);
    /// Cancels a pending timer; its function is destroyed without running.
    void cancel_timer(uint64_t id);

    /// Waits until `fd` is ready for `events` (POLLIN/POLLOUT) or `timeout`
    /// passed, then calls fn(worker, res): res is the revents mask (> 0),
    /// -ETIMEDOUT, or -errno (-ECANCELED on stop_now). The caller keeps `fd`
    /// open until fn ran. Returns an id for cancel_wait. `timeout` of
    /// kNoTimeout (or less): no deadline, and no timer is kept for the wait.
    uint64_t wait_fd(int fd, short events, std::chrono::milliseconds timeout,
                     UniqueFunction<void(Worker&, int res)> fn);
    /// Cancels a pending wait_fd; fn is destroyed without running.
    void cancel_wait(uint64_t id);

    [[nodiscard]] unsigned index() const noexcept { return options_.index; }
    [[nodiscard]] const WorkerOptions& options() const noexcept { return options_; }
    [[nodiscard]] const PipePool& pipe_pool() const noexcept { return pipes_; }
    [[nodiscard]] const BufferPool& buffer_pool() const noexcept { return buffers_; }
    /// Copy buffers held by sessions: the fallback pool plus the io_uring
    /// provided-buffer ring.
    [[nodiscard]] size_t buffers_in_use() const noexcept {
        return buffers_.in_use() + (buf_ring_ ? buf_ring_->in_use() : 0);
    }
    /// True when DataPath::Copy runs on io_uring RECV/SEND (a buffer ring was
    /// registered); false when it fell back to readiness plus recv/send.
    [[nodiscard]] bool uring_copy() const noexcept { return buf_ring_ != nullptr; }
    [[nodiscard]] const WorkerStats& stats() const noexcept { return stats_; }
    [[nodiscard]] unsigned ring_setup_flags() const noexcept { return ring_->setup_flags(); }

private:
    void run() noexcept;
    void dispatch(const Completion& c) noexcept;
    void drain_inbox() noexcept;
    void arm_inbox() noexcept;
    void arm_tick() noexcept;
    void on_tick() noexcept;
    void run_deferred() noexcept;
    void close_all(std::string_view reason) noexcept;

    // sessions (splice_pump.cpp)
    void on_session_poll(const Tag& tag, const Completion& c) noexcept;
    void on_session_io(const Tag& tag, const Completion& c) noexcept;
    void arm_recv(SessionId id, detail::Session& s, int dir) noexcept;
    void submit_send(SessionId id, detail::Session& s, int dir) noexcept;
    void give_buffer(uint16_t bid) noexcept;
    void arm_poll_in(SessionId id, detail::Session& s, int side) noexcept;
    void arm_poll_out(SessionId id, detail::Session& s, int dir) noexcept;
    void pump(SessionId id, int dir) noexcept;
    void finish_direction(SessionId id, detail::Session& s, int dir) noexcept;
    void fail_session(SessionId id, detail::Session& s, int side, int err) noexcept;
    void end_session(SessionId id, detail::Session& s, std::string_view reason,
                     bool abortive) noexcept;
    void release_holder(detail::Session& s, int dir) noexcept;
    void maybe_free(SessionId id, detail::Session& s) noexcept;

    // listeners, timers, waiters (worker.cpp)
    void arm_accept(uint32_t id, detail::Listener& l) noexcept;
    void on_accept(const Tag& tag, const Completion& c) noexcept;
    void on_timer(const Tag& tag, const Completion& c) noexcept;
    void on_wait(const Tag& tag, const Completion& c) noexcept;
    void cancel_user_data(uint64_t user_data) noexcept;

    WorkerOptions options_;
    // Declared before ring_ so it is destroyed after it: the kernel may write
    // into these buffers until the ring is gone.
    std::unique_ptr<BufRing> buf_ring_;
    std::vector<std::pair<SessionId, int>> buf_waiters_;  // RECVs that hit ENOBUFS
    std::unique_ptr<Ring> ring_;
    UniqueFd event_fd_;
    PipePool pipes_;
    BufferPool buffers_;
    WorkerStats stats_;
    std::thread thread_;

    std::mutex inbox_mutex_;
    std::vector<UniqueFunction<void(Worker&)>> inbox_;  // guarded by inbox_mutex_
    std::atomic<bool> stop_requested_{false};
    std::atomic<bool> stop_now_{false};
    std::atomic<bool> exited_{false};
    uint64_t inbox_value_ = 0;
    bool inbox_armed_ = false;
    bool tick_armed_ = false;

    std::unique_ptr<SessionTable<detail::Session>> sessions_;
    size_t open_sessions_ = 0;
    std::vector<std::pair<SessionId, int>> deferred_;  // directions with budget left over

    std::unordered_map<uint32_t, std::unique_ptr<detail::Listener>> listeners_;
    size_t listeners_live_ = 0;
    uint32_t next_listener_ = 1;
    std::unordered_map<uint32_t, std::unique_ptr<detail::Timer>> timers_;
    uint32_t next_timer_ = 1;
    std::unordered_map<uint32_t, std::unique_ptr<detail::Waiter>> waiters_;
    uint32_t next_waiter_ = 1;
};

}  // namespace sp::io
