// SPDX-License-Identifier: Apache-2.0
// TimerList: a worker's timers in user space. The loop runs the due ones and
// waits no longer than the nearest deadline, so adding a timer never needs an
// SQE and cannot fail (an io_uring timeout can, when the SQ refuses).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

#include "base/unique_function.hpp"

namespace sp::io {

class Worker;

/// Not thread-safe: owned and used by one worker thread.
class TimerList final {
public:
    using Clock = std::chrono::steady_clock;
    using Fn = UniqueFunction<void(Worker&)>;

    /// Schedules `fn` to run once at or after `when`. Returns its id, never 0
    /// (ids are not reused). Allocates; never fails otherwise.
    uint64_t add(Clock::time_point when, Fn fn);
    /// Drops a pending timer without running it; its memory is freed now, not
    /// at its deadline. Returns false for an unknown, fired or cancelled id.
    bool cancel(uint64_t id) noexcept;

    /// The nearest deadline, if any timer is pending.
    [[nodiscard]] std::optional<Clock::time_point> next() const noexcept;

    /// Runs, in deadline order, every timer due at `now` when the call
    /// started; timers that a callback adds wait for the next call, so a
    /// callback that re-adds itself cannot loop. A callback may cancel a
    /// timer that is due in the same call: it then does not run.
    /// Returns how many ran.
    size_t run_due(Clock::time_point now, Worker& w);

    [[nodiscard]] size_t size() const noexcept { return deadline_of_.size(); }

private:
    using Key = std::pair<Clock::time_point, uint64_t>;
    std::map<Key, Fn> by_deadline_;
    std::unordered_map<uint64_t, Clock::time_point> deadline_of_;
    uint64_t next_id_ = 1;
};

}  // namespace sp::io
