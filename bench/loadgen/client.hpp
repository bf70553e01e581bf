// SPDX-License-Identifier: Apache-2.0
// What the timed client workloads (stream, rr, crr, burst) share: a start gate
// so that setup never counts against the measured window, per-thread live
// counters, and the progress line on a terminal.
#pragma once

#include <atomic>
#include <cstdint>
#include <latch>
#include <vector>

namespace sp::bench {

/// Live counters the progress line reads; written by one client thread each.
struct alignas(64) Live {
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> ops{0};
};

/// Start line shared by client threads: each connects, then waits here, so
/// setup time never counts against the measured window.
struct StartGate {
    explicit StartGate(int n) : ready(n) {}
    std::latch ready;
    std::latch go{1};
    int64_t t0 = 0;
    int64_t deadline = 0;
};

/// Prints `what`'s rate (Gbit/s from Live::bytes, or ops/s from Live::ops)
/// to stderr once a second while `running` > 0, only when stderr is a tty.
/// Runs on its own thread; returns when `running` drops to 0.
void progress(const char* what, const std::vector<Live>& live, int64_t t0, double seconds,
              bool bytes_rate, const std::atomic<int>& running);

}  // namespace sp::bench
