// SPDX-License-Identifier: Apache-2.0
// Worker: one thread, one io_uring, and the reactor that serves them: CQE
// dispatch by Op, the inbox other threads post to, timers and wait_fd. What it
// runs lives in its parts: listeners (listener.hpp) and the session pump that
// moves bytes (pump.hpp). Other threads reach it only through post().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "base/unique_function.hpp"
#include "io/buffer_pool.hpp"
#include "io/op.hpp"
#include "io/pipe_pool.hpp"
#include "io/ring.hpp"
#include "io/session_table.hpp"

namespace sp::io {

class Listeners;
class SessionPump;
class TimerList;

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

/// Why a session ended; to_string() gives the REASON word of session-close
/// (sallyport(7)).
enum class EndReason : uint8_t {
    Eof,            // "eof": both sides finished cleanly
    ResetByClient,  // "reset-by-client": the client side reset or vanished
    ResetByPeer,    // "reset-by-peer": the peer (backend or data channel) side did
    IdleTimeout,    // "idle-timeout"
    Closed,         // close_session/stop_now: the caller's reason, "closed" by default
    Error,          // "error": a bug on our side (counted by SP_BUG)
};
[[nodiscard]] std::string_view to_string(EndReason r) noexcept;

/// What a finished session reports. `reason` points to a static string:
/// to_string(cause), or for EndReason::Closed the caller's reason.
struct SessionEnd {
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    std::chrono::milliseconds duration{};
    std::string_view reason;
    EndReason cause = EndReason::Closed;
};

/// A live session's progress so far, for status listings; bytes are those
/// delivered to the other side.
struct SessionProgress {
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    std::chrono::steady_clock::time_point start;
    std::chrono::steady_clock::time_point last_activity;
};

/// Counters for tests and status; read on the worker thread.
struct WorkerStats {
    uint64_t stale_completions = 0;   // CQEs dropped because their generation moved on
    uint64_t splice_fallbacks = 0;    // directions that fell back to recv/send
    uint64_t pipe_exhausted = 0;      // fills that used a buffer because no pipe was free
    uint64_t recv_no_buffer = 0;      // copy path: RECVs that found the buffer ring empty
    uint64_t sqe_refused = 0;         // arms the SQ refused, retried from the loop
    uint64_t resource_waits = 0;      // directions that backed off on ENOMEM/ENOBUFS
    uint64_t accept_peer_errors = 0;  // accepts a client broke (ECONNABORTED...), not reported
    uint64_t accept_sweeps = 0;       // connections a lost wakeup left queued (Listeners::sweep)
    uint64_t bugs = 0;                // SP_BUG hits on this worker
};

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
    //
    // Allocation: these and the loop allocate (maps, vectors, callbacks) and
    // are noexcept where the loop calls them, so std::bad_alloc there ends the
    // process (Envoy's rule: crash on OOM rather than run half-updated).

    using AcceptFn = std::function<void(Worker&, UniqueFd client, const SocketAddress& peer,
                                        const SocketAddress& local)>;
    /// `err` is a -errno. Called only when accepting stops, never for errors
    /// one client causes (ECONNABORTED, EPERM, EPROTO...: counted in
    /// WorkerStats::accept_peer_errors and the next client is taken):
    /// - paused true: a resource ran out (EMFILE, ENFILE, ENOBUFS, ENOMEM, or
    ///   an errno we do not know); accepting resumes by itself after ~100 ms;
    /// - paused false: the listener is broken (EBADF, EINVAL...: a bug, counted
    ///   by SP_BUG); it stays stopped until removed.
    using AcceptErrorFn = std::function<void(Worker&, int err, bool paused)>;
    /// Starts a multishot accept on `listening_fd` (non-blocking). Returns the
    /// listener id for remove_listener. Never fails: when the SQ refuses the
    /// accept, the loop arms it as soon as there is room.
    uint64_t add_listener(UniqueFd listening_fd, AcceptFn on_accept, AcceptErrorFn on_error);
    /// Stops accepting and closes the fd; established sessions are unaffected.
    void remove_listener(uint64_t id);
    [[nodiscard]] size_t listener_count() const noexcept;

    using CloseFn = std::function<void(Worker&, SessionId, const SessionEnd&)>;
    /// Takes both connected sockets, which must be non-blocking (checked in
    /// debug builds only), and moves bytes both ways
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
    [[nodiscard]] size_t session_count() const noexcept;
    /// The progress of an open session; nullopt for a stale id or one that
    /// is closing. Worker thread.
    [[nodiscard]] std::optional<SessionProgress> session_progress(SessionId id) const noexcept;

    /// Runs `fn` once after `delay` (on the loop's next turn at or after the
    /// deadline). Returns an id for cancel_timer, never 0. Never fails: the
    /// timer lives in user space and needs no SQE.
    uint64_t add_timer(std::chrono::milliseconds delay, UniqueFunction<void(Worker&)> fn);
    /// Cancels a pending timer; its function is destroyed without running.
    void cancel_timer(uint64_t id);

    /// Waits until `fd` is ready for `events` (POLLIN/POLLOUT) or `timeout`
    /// passed, then calls fn(worker, res) exactly once: res is the revents
    /// mask (> 0), -ETIMEDOUT, or -errno (-ECANCELED on stop_now). The caller
    /// keeps `fd` open until fn ran. Returns an id for cancel_wait, never 0.
    /// When the SQ refuses the poll the loop arms it later; the timeout runs
    /// regardless. `timeout` of kNoTimeout (or less): no deadline, and no
    /// timer is kept for the wait.
    uint64_t wait_fd(int fd, short events, std::chrono::milliseconds timeout,
                     UniqueFunction<void(Worker&, int res)> fn);
    /// Cancels a pending wait_fd; fn is destroyed without running.
    void cancel_wait(uint64_t id);

    /// Worker thread: sessions started from now on use `path`; open ones
    /// keep theirs (a reload that changed data_path). Copy registers the
    /// buffer ring on first use.
    void set_data_path(DataPath path) noexcept;

    [[nodiscard]] unsigned index() const noexcept { return options_.index; }
    [[nodiscard]] const WorkerOptions& options() const noexcept { return options_; }
    [[nodiscard]] const PipePool& pipe_pool() const noexcept;
    [[nodiscard]] const BufferPool& buffer_pool() const noexcept;
    /// Copy buffers held by sessions: the fallback pool plus the io_uring
    /// provided-buffer ring.
    [[nodiscard]] size_t buffers_in_use() const noexcept;
    /// True when DataPath::Copy runs on io_uring RECV/SEND (a buffer ring was
    /// registered); false when it fell back to readiness plus recv/send.
    [[nodiscard]] bool uring_copy() const noexcept;
    [[nodiscard]] const WorkerStats& stats() const noexcept { return stats_; }
    [[nodiscard]] unsigned ring_setup_flags() const noexcept { return ring_->setup_flags(); }

    /// Tests only: the next `n` SQE requests are refused as when the kernel
    /// refuses SQEs, to exercise the paths that arm again later.
    void refuse_sqes_for_testing(unsigned n) noexcept { ring_->refuse_sqes_for_testing(n); }

private:
    struct Waiter;

    void run() noexcept;
    void dispatch(const Completion& c) noexcept;
    [[nodiscard]] bool arm_inbox() noexcept;
    void drain_inbox() noexcept;
    /// Runs the worker's posts to itself; returns true when they posted more.
    bool run_local_posts() noexcept;
    void on_tick() noexcept;
    /// Arms the polls of waiters the SQ refused; true while some still wait.
    [[nodiscard]] bool arm_waiters() noexcept;
    [[nodiscard]] bool arm_wait(uint32_t id, Waiter& w) noexcept;
    void on_wait(const Tag& tag, const Completion& c) noexcept;
    void cancel_all_waits() noexcept;

    WorkerOptions options_;
    WorkerStats stats_;
    // The pump owns the provided-buffer ring, which the kernel may write
    // into until the ring is gone: declared before ring_, destroyed after it.
    std::unique_ptr<SessionPump> pump_;
    std::unique_ptr<Listeners> listeners_;
    std::unique_ptr<TimerList> timers_;
    std::unique_ptr<Ring> ring_;
    UniqueFd event_fd_;
    std::thread thread_;

    std::mutex inbox_mutex_;
    std::vector<UniqueFunction<void(Worker&)>> inbox_;  // guarded by inbox_mutex_
    // Set by the first post after a drain: later posts skip the eventfd
    // write(2) the worker has not read yet.
    std::atomic<bool> wake_pending_{false};
    // The worker thread's id, set by run(): a post from the worker to
    // itself (a refill after a pairing) needs neither the lock nor a wakeup.
    std::atomic<std::thread::id> loop_thread_{};
    std::vector<UniqueFunction<void(Worker&)>> local_posts_;  // worker thread only
    std::atomic<bool> stop_requested_{false};
    std::atomic<bool> stop_now_{false};
    uint64_t inbox_value_ = 0;
    bool inbox_armed_ = false;

    std::unordered_map<uint32_t, std::unique_ptr<Waiter>> waiters_;
    std::vector<uint32_t> unarmed_waiters_;  // the SQ refused their poll
    uint32_t next_waiter_ = 1;
};

}  // namespace sp::io
