// SPDX-License-Identifier: Apache-2.0
#include "histogram.hpp"

#include <algorithm>
#include <bit>

namespace sp::bench {

int Histogram::index(uint64_t v) noexcept {
    if (v < 2 * uint64_t{kSub}) {
        return static_cast<int>(v);
    }
    const int e = 63 - std::countl_zero(v);                // >= kSubBits + 1
    const auto m = static_cast<int>(v >> (e - kSubBits));  // in [kSub, 2*kSub)
    return 2 * kSub + (e - kSubBits - 1) * kSub + (m - kSub);
}

uint64_t Histogram::midpoint(int idx) noexcept {
    if (idx < 2 * kSub) {
        return static_cast<uint64_t>(idx);
    }
    const int e = (idx - 2 * kSub) / kSub + kSubBits + 1;
    const uint64_t m = (static_cast<uint64_t>(idx) - 2 * uint64_t{kSub}) % kSub + kSub;
    const int shift = e - kSubBits;
    return (m << shift) + ((uint64_t{1} << shift) >> 1);
}

void Histogram::record(uint64_t ns) noexcept {
    ++buckets_[static_cast<size_t>(index(ns))];
    ++count_;
    sum_ += ns;
    min_ = std::min(min_, ns);
    max_ = std::max(max_, ns);
}

void Histogram::merge(const Histogram& other) noexcept {
    for (size_t i = 0; i < buckets_.size(); ++i) {
        buckets_[i] += other.buckets_[i];
    }
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

uint64_t Histogram::quantile(double q) const noexcept {
    if (count_ == 0) {
        return 0;
    }
    const auto target = static_cast<uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
        seen += buckets_[i];
        if (seen >= target) {
            return std::clamp(midpoint(static_cast<int>(i)), min_, max_);
        }
    }
    return max_;
}

std::vector<std::pair<uint64_t, double>> Histogram::cdf() const {
    std::vector<std::pair<uint64_t, double>> out;
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
        if (buckets_[i] == 0) {
            continue;
        }
        seen += buckets_[i];
        out.emplace_back(std::clamp(midpoint(static_cast<int>(i)), min_, max_),
                         static_cast<double>(seen) / static_cast<double>(count_));
    }
    return out;
}

}  // namespace sp::bench
