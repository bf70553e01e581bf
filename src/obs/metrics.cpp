// SPDX-License-Identifier: Apache-2.0
#include "obs/metrics.hpp"

#include <algorithm>
#include <cmath>

#include "base/assert.hpp"

namespace sp::obs {

namespace {

bool name_char(char c, bool first, bool colon) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    return alpha || (colon && c == ':') || (!first && digit);
}

bool valid_name(std::string_view s, bool colon) {
    if (s.empty()) {
        return false;
    }
    for (size_t i = 0; i < s.size(); ++i) {
        if (!name_char(s[i], i == 0, colon)) {
            return false;
        }
    }
    return true;
}

}  // namespace

std::string check_family(const Family& f) {
    const std::string name(f.name);
    if (!valid_name(f.name, true)) {
        return name + ": not a Prometheus metric name";
    }
    if (!f.name.starts_with("sallyport_")) {
        return name + ": must start with sallyport_";
    }
    if (f.help.empty()) {
        return name + ": needs a help text";
    }
    const bool total = f.name.ends_with("_total");
    if ((f.kind == Kind::Counter) != total) {
        return name + (total ? ": only counters end in _total" : ": a counter ends in _total");
    }
    if (f.kind == Kind::Histogram &&
        (f.name.ends_with("_bucket") || f.name.ends_with("_sum") || f.name.ends_with("_count"))) {
        return name + ": a histogram's name must not end in _bucket, _sum or _count";
    }
    for (size_t i = 0; i < f.labels.size(); ++i) {
        const auto l = f.labels[i];
        if (!valid_name(l, false) || l.starts_with("__")) {
            return name + ": bad label name \"" + std::string(l) + "\"";
        }
        if (f.kind == Kind::Histogram && l == "le") {
            return name + ": a histogram cannot have a label \"le\"";
        }
        for (size_t j = 0; j < i; ++j) {
            if (f.labels[j] == l) {
                return name + ": label \"" + std::string(l) + "\" twice";
            }
        }
    }
    if ((f.kind == Kind::Histogram) != !f.buckets.empty()) {
        return name + ": buckets are for histograms, and every histogram needs some";
    }
    for (size_t i = 0; i < f.buckets.size(); ++i) {
        if (!std::isfinite(f.buckets[i]) || (i > 0 && f.buckets[i] <= f.buckets[i - 1])) {
            return name + ": buckets must be finite and strictly ascending";
        }
    }
    return {};
}

Series& MetricSet::series(const Family& f, std::initializer_list<std::string_view> labels) {
    // A mismatch is a programming error; in release the values are padded or
    // cut so the output stays well-formed.
    SP_ASSERT(labels.size() == f.labels.size());
    auto& data = families_[f.name];
    if (data.family == nullptr) {
        data.family = &f;
    }
    SP_ASSERT(data.family->kind == f.kind);
    Labels key(labels.begin(), labels.begin() + std::min(labels.size(), f.labels.size()));
    key.resize(f.labels.size());
    auto [it, inserted] = data.series.try_emplace(std::move(key));
    if (inserted && f.kind == Kind::Histogram) {
        it->second.buckets.assign(f.buckets.size() + 1, 0);
    }
    return it->second;
}

void MetricSet::declare(const Family& f) {
    if (f.labels.empty()) {
        (void)series(f, {});
    } else {
        auto& data = families_[f.name];
        if (data.family == nullptr) {
            data.family = &f;
        }
    }
}

void MetricSet::add(const Family& f, std::initializer_list<std::string_view> labels, uint64_t n) {
    SP_ASSERT(f.kind == Kind::Counter);
    series(f, labels).count += n;
}

void MetricSet::set(const Family& f, std::initializer_list<std::string_view> labels, double v) {
    SP_ASSERT(f.kind == Kind::Gauge);
    series(f, labels).value = v;
}

void MetricSet::observe(const Family& f, std::initializer_list<std::string_view> labels, double v) {
    SP_ASSERT(f.kind == Kind::Histogram);
    Series& s = series(f, labels);
    // First bucket whose upper bound holds v (le is inclusive); past all of
    // them, the +Inf slot at the end.
    const auto at = std::lower_bound(f.buckets.begin(), f.buckets.end(), v);
    ++s.buckets[static_cast<size_t>(at - f.buckets.begin())];
    ++s.count;
    s.value += v;
}

Counter MetricSet::counter(const Family& f, std::initializer_list<std::string_view> labels) {
    SP_ASSERT(f.kind == Kind::Counter);
    return Counter(&series(f, labels));
}

void MetricSet::merge(const MetricSet& other) {
    for (const auto& [name, theirs] : other.families_) {
        auto& mine = families_[name];
        if (mine.family == nullptr) {
            mine.family = theirs.family;
        }
        for (const auto& [labels, s] : theirs.series) {
            auto [it, inserted] = mine.series.try_emplace(labels, s);
            if (inserted) {
                continue;
            }
            Series& m = it->second;
            m.count += s.count;
            m.value += s.value;
            if (m.buckets.size() == s.buckets.size()) {
                for (size_t i = 0; i < s.buckets.size(); ++i) {
                    m.buckets[i] += s.buckets[i];
                }
            }
        }
    }
}

}  // namespace sp::obs
