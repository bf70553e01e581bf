// SPDX-License-Identifier: Apache-2.0
#include "control/backoff.hpp"

#include <algorithm>

namespace sp::control {

namespace {
// 2^20 x any sane initial delay is past any sane cap; bounding the shift
// keeps `initial << shift` from overflowing.
constexpr unsigned kMaxShift = 20;
}  // namespace

Backoff::Ms Backoff::next() noexcept {
    const unsigned shift = std::min(attempt_, kMaxShift);
    const auto d = std::max<int64_t>(1, std::min<int64_t>(cap_.count(), initial_.count() << shift));
    ++attempt_;
    // xorshift64: jitter needs spread, not cryptographic strength.
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    const int64_t half = d / 2;
    return Ms(half + static_cast<int64_t>(state_ % static_cast<uint64_t>(d - half + 1)));
}

void Backoff::max_out() noexcept {
    // The smallest n whose delay reaches the cap; never lowers a count that
    // is already past it.
    unsigned n = 0;
    while (n < kMaxShift && (initial_.count() << n) < cap_.count()) {
        ++n;
    }
    attempt_ = std::max(attempt_, n);
}

}  // namespace sp::control
