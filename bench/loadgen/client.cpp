// SPDX-License-Identifier: Apache-2.0
#include "client.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "clock.hpp"

namespace sp::bench {

void progress(const char* what, const std::vector<Live>& live, int64_t t0, double seconds,
              bool bytes_rate, const std::atomic<int>& running) {
    const bool tty = isatty(STDERR_FILENO) == 1;
    uint64_t last = 0;
    int64_t last_t = t0;
    while (running.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const int64_t t = now_ns();
        if (!tty || t - last_t < 1'000'000'000) {
            continue;
        }
        uint64_t cur = 0;
        for (const Live& l : live) {
            cur += bytes_rate ? l.bytes.load(std::memory_order_relaxed)
                              : l.ops.load(std::memory_order_relaxed);
        }
        const double dt = static_cast<double>(t - last_t) / 1e9;
        const double rate = static_cast<double>(cur - last) / dt;
        if (bytes_rate) {
            std::fprintf(stderr, "\r[%s] %5.1f/%.0f s  %8.2f Gbit/s   ", what,
                         static_cast<double>(t - t0) / 1e9, seconds, rate * 8 / 1e9);
        } else {
            std::fprintf(stderr, "\r[%s] %5.1f/%.0f s  %10.0f ops/s   ", what,
                         static_cast<double>(t - t0) / 1e9, seconds, rate);
        }
        last = cur;
        last_t = t;
    }
    if (tty) {
        std::fputs("\n", stderr);
    }
}

}  // namespace sp::bench
