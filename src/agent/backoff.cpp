// SPDX-License-Identifier: Apache-2.0
#include "agent/backoff.hpp"

#include <algorithm>

namespace sp::agent {

Backoff::Ms Backoff::next() noexcept {
    // Doubling stops at the cap; the shift is bounded so it cannot overflow.
    const unsigned shift = std::min(attempt_, 20U);
    const auto d = std::min<int64_t>(cap_.count(), initial_.count() << shift);
    ++attempt_;
    // xorshift64: jitter needs spread, not cryptographic strength.
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    const int64_t half = d / 2;
    return Ms(half + static_cast<int64_t>(state_ % static_cast<uint64_t>(d - half + 1)));
}

}  // namespace sp::agent
