// SPDX-License-Identifier: Apache-2.0
// The deterministic byte stream sallyport-bench sends and verifies: cheap to
// send (no per-byte work) and cheap to check (one memcmp), yet position-aware.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sp::bench {

/// Stream for a seed: a 1 MiB pseudo-random block repeated, with every 4 KiB
/// boundary carrying an 8-byte stamp derived from its absolute offset. The
/// stamps make a reordered, duplicated or dropped chunk fail verification even
/// when it is a whole period long; the repeated block keeps the sender free of
/// per-byte work, as iperf3's is.
class Pattern final {
public:
    static constexpr size_t kPeriod = size_t{1} << 20;
    static constexpr size_t kStampEvery = 4096;

    explicit Pattern(uint64_t seed);

    struct Span {
        const uint8_t* data;
        size_t size;  // bytes valid from `data`, never past the period boundary
    };
    /// The stream bytes starting at absolute offset `off`, at most `max` of
    /// them. The pointer stays valid until the next call. Never blocks.
    [[nodiscard]] Span at(uint64_t off, size_t max) noexcept;

    /// Compares `n` received bytes with the stream at `off`. Returns the number
    /// of bytes that differ (0 = intact). Never blocks.
    [[nodiscard]] uint64_t verify(uint64_t off, const uint8_t* data, size_t n) noexcept;

private:
    void restamp(uint64_t period) noexcept;

    std::vector<uint8_t> block_;
    uint64_t key_;
    uint64_t period_ = ~uint64_t{0};
};

/// splitmix64: the mixer used for seeds, stamps and request contents.
[[nodiscard]] uint64_t mix64(uint64_t x) noexcept;

}  // namespace sp::bench
