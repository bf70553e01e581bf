// SPDX-License-Identifier: Apache-2.0
// sallyport-bench's one clock: CLOCK_MONOTONIC in nanoseconds, for deadlines
// and latencies alike.
#pragma once

#include <time.h>

#include <cstdint>

namespace sp::bench {

/// Monotonic time in nanoseconds. Any thread; never blocks.
[[nodiscard]] inline int64_t now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace sp::bench
