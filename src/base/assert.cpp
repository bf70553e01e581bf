// SPDX-License-Identifier: Apache-2.0
#include "base/assert.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace sp::detail {

namespace {
std::atomic<unsigned long> g_bugs{0};
}

void check_failed(const char* expr, const char* file, int line) noexcept {
    std::fprintf(stderr, "sallyport: check failed: %s at %s:%d\n", expr, file, line);
    std::abort();
}

void bug_hit(const char* expr, const char* file, int line) noexcept {
    g_bugs.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "sallyport: BUG: %s at %s:%d\n", expr, file, line);
#ifndef NDEBUG
    std::abort();
#endif
}

}  // namespace sp::detail
