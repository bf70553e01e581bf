// SPDX-License-Identifier: Apache-2.0
// Metrics as plain single-writer data: a MetricSet holds labelled counters,
// gauges and histograms, owned by one thread (a worker's shard, the control
// thread) that updates it with no lock and no atomic. Other threads never
// read it in place: they ask the owner for a copy by message
// (io::Sharded::map_reduce) and merge the copies, then obs/prometheus.hpp
// renders the sum.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sp::obs {

enum class Kind : uint8_t { Counter, Gauge, Histogram };

/// One metric family, named by Prometheus conventions (sallyport_ prefix,
/// snake_case, base units: _bytes, _seconds; counters end in _total).
/// MetricSet keeps pointers to families and views of their strings: define
/// each one with static storage duration (a namespace-scope constexpr).
struct Family {
    std::string_view name;
    std::string_view help;
    Kind kind = Kind::Counter;
    std::span<const std::string_view> labels = {};  // label names, in order
    std::span<const double> buckets = {};           // histograms: upper bounds, ascending
};

/// Why `f` breaks the naming rules above or Prometheus' syntax ("" when it
/// does not): the name and label syntax, the prefix, _total on counters and
/// only on them, label names (no "le" on a histogram, none starting "__"),
/// buckets finite, strictly ascending and present exactly for histograms.
[[nodiscard]] std::string check_family(const Family& f);

/// Upper bounds in seconds for latencies on loopback up to a slow WAN
/// (session set-up, control-channel round trips).
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/// Upper bounds in seconds for how long sessions last (a second to a day).
inline constexpr std::array<double, 10> kDurationBuckets = {1,    10,   60,    300,   900,
                                                            1800, 3600, 14400, 43200, 86400};

/// One series. Counters use `count`; gauges `value`; histograms `count`
/// (observations), `value` (their sum) and `buckets` (per bucket, not
/// cumulative; the last one counts observations above every bound).
struct Series {
    uint64_t count = 0;
    double value = 0;
    std::vector<uint64_t> buckets;
};

/// A fast handle on one series of a MetricSet, for code that updates the
/// same series often: valid while the set lives (series are never removed
/// except by clear()). Same thread rules as the set.
class Counter final {
public:
    explicit Counter(Series* s = nullptr) noexcept : s_(s) {}
    void add(uint64_t n = 1) noexcept {
        if (s_ != nullptr) {
            s_->count += n;
        }
    }

private:
    Series* s_;
};

class MetricSet final {
public:
    using Labels = std::vector<std::string>;
    struct FamilyData {
        const Family* family = nullptr;
        std::map<Labels, Series> series;
    };

    /// Makes `f` appear in the output even before any update (an unlabelled
    /// family gets its zero series).
    void declare(const Family& f);
    /// Counter: adds `n`. `labels` gives one value per label name of `f`.
    void add(const Family& f, std::initializer_list<std::string_view> labels, uint64_t n = 1);
    /// Gauge: sets the value.
    void set(const Family& f, std::initializer_list<std::string_view> labels, double v);
    /// Histogram: counts one observation of `v`.
    void observe(const Family& f, std::initializer_list<std::string_view> labels, double v);
    /// A handle on a counter series, created at 0 if new.
    [[nodiscard]] Counter counter(const Family& f, std::initializer_list<std::string_view> labels);

    /// Adds `other` in: counters, gauges and histograms sum (per-worker gauges
    /// such as open sessions add up to the process's). Families are matched
    /// by name; `other` may be a copy made on another thread.
    void merge(const MetricSet& other);
    void clear() noexcept { families_.clear(); }

    /// Families by name, for the renderer.
    [[nodiscard]] const std::map<std::string_view, FamilyData>& families() const noexcept {
        return families_;
    }

private:
    Series& series(const Family& f, std::initializer_list<std::string_view> labels);

    std::map<std::string_view, FamilyData> families_;
};

}  // namespace sp::obs
