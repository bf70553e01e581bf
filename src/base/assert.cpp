// SPDX-License-Identifier: Apache-2.0
#include "base/assert.hpp"

#include <cstdio>
#include <cstdlib>

namespace sp::detail {

void check_failed(const char* expr, const char* file, int line) noexcept {
    std::fprintf(stderr, "sallyport: check failed: %s at %s:%d\n", expr, file, line);
    std::abort();
}

void bug_hit(const char* what, const char* file, int line) noexcept {
    std::fprintf(stderr, "sallyport: BUG: %s at %s:%d\n", what, file, line);
#ifndef NDEBUG
    std::abort();
#endif
}

}  // namespace sp::detail
