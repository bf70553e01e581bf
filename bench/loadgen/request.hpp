// SPDX-License-Identifier: Apache-2.0
// The requests rr, crr and burst send: seeded bytes that differ per request,
// so that a stale or misrouted response fails the comparison.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pattern.hpp"

namespace sp::bench {

/// Request `seq` of a session: `size` bytes of a seeded random block at an
/// offset that moves with seq, so a stale or misrouted response is caught.
struct RequestSource {
    RequestSource(uint32_t seed, size_t size) : size_(size), block_(size + 4096) {
        uint64_t s = mix64(seed);
        for (auto& b : block_) {
            s = mix64(s);
            b = static_cast<uint8_t>(s);
        }
    }
    [[nodiscard]] const uint8_t* request(uint64_t seq) const noexcept {
        return block_.data() + (mix64(seq) % 4096);
    }
    size_t size_;
    std::vector<uint8_t> block_;
};

}  // namespace sp::bench
