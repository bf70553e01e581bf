// SPDX-License-Identifier: Apache-2.0
#include "relay/pool.hpp"

#include <algorithm>
#include <cmath>

#include "control/frame.hpp"

namespace sp::relay {

PoolPolicy::PoolPolicy(unsigned cap) : cap_(cap), demand_(cap) {}

void PoolPolicy::tick() noexcept {
    demand_ = std::max(static_cast<double>(paired_), demand_ * 7 / 8);
    paired_ = 0;
    dying_ = dead_ > 0;
    dead_ = 0;
    asked_ = false;
}

unsigned PoolPolicy::target() const noexcept {
    const auto want = static_cast<unsigned>(std::min<double>(std::ceil(demand_), cap_));
    return std::max(want, floor());
}

unsigned PoolPolicy::want(size_t idle, size_t outstanding, size_t waiting) const noexcept {
    if ((dying_ || dead_ > 0) && asked_) {
        return 0;
    }
    const size_t have = idle + outstanding;
    const size_t need = target() + waiting;
    if (have >= need || outstanding >= kMaxOutstanding) {
        return 0;
    }
    if (waiting == 0 && have * 2 > target()) {
        return 0;
    }
    const size_t n = std::min({need - have, kMaxOutstanding - outstanding, control::kMaxTokens});
    return static_cast<unsigned>(n);
}

size_t PoolPolicy::excess(size_t idle) const noexcept {
    return idle > target() ? idle - target() : 0;
}

}  // namespace sp::relay
