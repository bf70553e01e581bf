// SPDX-License-Identifier: Apache-2.0
#include "pattern.hpp"

#include <cstring>

namespace sp::bench {

uint64_t mix64(uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

Pattern::Pattern(uint64_t seed) : block_(kPeriod), key_(mix64(seed ^ 0x5a5a5a5a5a5a5a5aULL)) {
    uint64_t s = mix64(seed);
    for (size_t i = 0; i < kPeriod; i += 8) {
        s = mix64(s);
        std::memcpy(&block_[i], &s, 8);
    }
}

void Pattern::restamp(uint64_t period) noexcept {
    period_ = period;
    const uint64_t base = period * kPeriod;
    for (size_t i = 0; i < kPeriod; i += kStampEvery) {
        const uint64_t stamp = mix64((base + i) ^ key_);
        std::memcpy(&block_[i], &stamp, 8);
    }
}

Pattern::Span Pattern::at(uint64_t off, size_t max) noexcept {
    const uint64_t period = off / kPeriod;
    if (period != period_) {
        restamp(period);
    }
    const size_t pos = off % kPeriod;
    const size_t n = kPeriod - pos < max ? kPeriod - pos : max;
    return {block_.data() + pos, n};
}

uint64_t Pattern::verify(uint64_t off, const uint8_t* data, size_t n) noexcept {
    uint64_t bad = 0;
    while (n > 0) {
        const Span s = at(off, n);
        if (std::memcmp(s.data, data, s.size) != 0) {
            // Slow path only on corruption: count the differing bytes.
            for (size_t i = 0; i < s.size; ++i) {
                bad += s.data[i] != data[i];
            }
        }
        off += s.size;
        data += s.size;
        n -= s.size;
    }
    return bad;
}

}  // namespace sp::bench
