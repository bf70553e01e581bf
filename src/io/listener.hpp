// SPDX-License-Identifier: Apache-2.0
// Listeners: a worker's listening sockets, each with one multishot accept that
// pauses on resource errors and is armed again through a single path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/unique_fd.hpp"
#include "io/op.hpp"
#include "io/ring.hpp"
#include "io/worker.hpp"

namespace sp::io {

class TimerList;

/// Not thread-safe: owned by one Worker and used on its thread. It asks its
/// host for three things only: SQEs (`ring`), timers for the pause
/// (`timers`), and the Worker reference it hands to callbacks.
class Listeners final {
public:
    Listeners(Worker& owner, Ring& ring, TimerList& timers, WorkerStats& stats) noexcept
        : owner_(owner), ring_(ring), timers_(timers), stats_(stats) {}
    Listeners(const Listeners&) = delete;
    Listeners& operator=(const Listeners&) = delete;

    /// Takes `fd` and arms its accept (or queues the arm when the SQ refuses).
    /// Returns the id for remove(), never 0.
    uint64_t add(UniqueFd fd, Worker::AcceptFn on_accept, Worker::AcceptErrorFn on_error);
    /// Cancels the accept and closes the fd now; unknown ids are ignored.
    /// Safe from inside the listener's own callbacks.
    void remove(uint64_t id) noexcept;
    [[nodiscard]] size_t live() const noexcept { return live_; }

    /// A CQE tagged Op::Accept.
    void on_accept(const Tag& tag, const Completion& c) noexcept;
    /// Arms accepts the SQ refused earlier. Returns true while some still wait.
    [[nodiscard]] bool retry() noexcept;
    /// About once a second: accepts, without the ring, what waits in the
    /// queue of an armed listener. A socket handed over by a binary
    /// upgrade can miss one wakeup (the old process's cancelled accept may
    /// take it), leaving a connection queued until the next arrives; this
    /// bounds that wait to the tick. One poll(2) per listener.
    void sweep() noexcept;
    /// Forgets removed listeners that no accept refers to any more. Call
    /// between batches, never under a callback.
    void collect() noexcept;

private:
    struct Listener {
        UniqueFd fd;
        // Shared, so an accept copies a pointer, not the callback and what
        // it captured, to stay safe against the callback removing its
        // listener.
        std::shared_ptr<const Worker::AcceptFn> on_accept;
        // The listening address when it is a specific one: every accepted
        // socket has it as its local address, and a getsockname(2) per
        // accept is saved. Unset for a wildcard bind.
        std::optional<SocketAddress> local;
        Worker::AcceptErrorFn on_error;
        bool armed = false;    // a multishot accept is in flight (until its CQE without F_MORE)
        bool paused = false;   // a resource error: the resume timer is pending
        bool broken = false;   // a bug-class error: never armed again
        bool removed = false;  // remove() ran; erased by collect() once !armed
        bool queued = false;   // on unarmed_: the SQ refused its accept
        uint64_t resume_timer = 0;
    };

    /// The one (re-)arm path, from add(), the end of a multishot, the end of
    /// a pause and retry(). Arms only a listener that is not armed, paused,
    /// broken or removed; when the SQ refuses, queues it for retry().
    void maybe_arm(uint32_t id, Listener& l) noexcept;
    /// Resource error: stops the accept and arms it again ~100 ms later.
    void pause(uint32_t id, Listener& l) noexcept;
    /// Hands an accepted client to the listener's callback with its peer and
    /// local address; a client already gone (ENOTCONN) is dropped quietly.
    void deliver(Listener& l, UniqueFd fd) noexcept;
    /// Calls the listener's error callback (a copy: it may remove the listener).
    void report(Listener& l, int err, bool paused) noexcept;

    Worker& owner_;
    Ring& ring_;
    TimerList& timers_;
    WorkerStats& stats_;
    std::unordered_map<uint32_t, std::unique_ptr<Listener>> listeners_;
    std::vector<uint32_t> unarmed_;
    size_t live_ = 0;
    uint32_t next_id_ = 1;
};

}  // namespace sp::io
