// SPDX-License-Identifier: Apache-2.0
// A small log-linear latency histogram (HdrHistogram's bucket layout with 32
// sub-buckets per power of two: about 3% resolution from 1 ns to hours).
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace sp::bench {

class Histogram final {
public:
    static constexpr int kSubBits = 5;
    static constexpr int kSub = 1 << kSubBits;
    static constexpr int kBuckets = 2 * kSub + (63 - kSubBits) * kSub;

    /// Records one value (nanoseconds). Never blocks, never allocates.
    void record(uint64_t ns) noexcept;
    void merge(const Histogram& other) noexcept;

    [[nodiscard]] uint64_t count() const noexcept { return count_; }
    [[nodiscard]] uint64_t max() const noexcept { return max_; }
    [[nodiscard]] uint64_t min() const noexcept { return count_ ? min_ : 0; }
    [[nodiscard]] double mean() const noexcept {
        return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
    }
    /// The value (ns, bucket midpoint, clamped to the observed range) at
    /// quantile q in [0, 1]; 0 when empty.
    [[nodiscard]] uint64_t quantile(double q) const noexcept;
    /// Cumulative distribution: (value ns, fraction <= value) per non-empty bucket.
    [[nodiscard]] std::vector<std::pair<uint64_t, double>> cdf() const;

private:
    [[nodiscard]] static int index(uint64_t v) noexcept;
    [[nodiscard]] static uint64_t midpoint(int idx) noexcept;

    std::array<uint64_t, kBuckets> buckets_{};
    uint64_t count_ = 0;
    uint64_t sum_ = 0;
    uint64_t min_ = ~uint64_t{0};
    uint64_t max_ = 0;
};

}  // namespace sp::bench
