// SPDX-License-Identifier: Apache-2.0
#include "base/assert.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace sp {

namespace {
std::atomic<unsigned long> g_bugs{0};
}

unsigned long bug_count() noexcept {
    return g_bugs.load(std::memory_order_relaxed);
}

namespace detail {

void check_failed(const char* expr, const char* file, int line) noexcept {
    std::fprintf(stderr, "sallyport: check failed: %s at %s:%d\n", expr, file, line);
    std::abort();
}

void bug_hit(const char* what, const char* file, int line) noexcept {
    g_bugs.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "sallyport: BUG: %s at %s:%d\n", what, file, line);
#ifndef NDEBUG
    std::abort();
#endif
}

}  // namespace detail
}  // namespace sp
