// SPDX-License-Identifier: Apache-2.0
#include "obs/prometheus.hpp"

#include <cmath>

#include <fmt/format.h>

namespace sp::obs {

namespace {

std::string_view type_name(Kind k) {
    switch (k) {
        case Kind::Counter:
            return "counter";
        case Kind::Gauge:
            return "gauge";
        case Kind::Histogram:
            return "histogram";
    }
    return "untyped";
}

void escape(std::string& out, std::string_view s, bool quote) {
    for (const char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (quote && c == '"') {
            out += "\\\"";
        } else {
            out += c;
        }
    }
}

/// {a="x",b="y"} with an optional extra label (a histogram's le), or ""
/// when there is no label at all.
void label_block(std::string& out, const Family& f, const MetricSet::Labels& values,
                 std::string_view extra_name = {}, std::string_view extra_value = {}) {
    if (f.labels.empty() && extra_name.empty()) {
        return;
    }
    out += '{';
    bool first = true;
    for (size_t i = 0; i < f.labels.size() && i < values.size(); ++i) {
        if (!first) {
            out += ',';
        }
        first = false;
        out += f.labels[i];
        out += "=\"";
        escape(out, values[i], true);
        out += '"';
    }
    if (!extra_name.empty()) {
        if (!first) {
            out += ',';
        }
        out += extra_name;
        out += "=\"";
        out += extra_value;
        out += '"';
    }
    out += '}';
}

void sample(std::string& out, const Family& f, std::string_view suffix,
            const MetricSet::Labels& labels, std::string_view value,
            std::string_view extra_name = {}, std::string_view extra_value = {}) {
    out += f.name;
    out += suffix;
    label_block(out, f, labels, extra_name, extra_value);
    out += ' ';
    out += value;
    out += '\n';
}

}  // namespace

std::string format_value(double v) {
    if (std::isnan(v)) {
        return "NaN";
    }
    if (std::isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    // Exact integers (the common case: counts, bytes) without an exponent
    // or a fraction; anything else in the shortest form that reads back.
    if (v == std::trunc(v) && std::fabs(v) < 1e15) {
        return fmt::format("{}", static_cast<int64_t>(v));
    }
    return fmt::format("{}", v);
}

std::string render(const MetricSet& set) {
    std::string out;
    for (const auto& [name, data] : set.families()) {
        const Family& f = *data.family;
        if (!check_family(f).empty()) {
            continue;
        }
        out += "# HELP ";
        out += f.name;
        out += ' ';
        escape(out, f.help, false);
        out += "\n# TYPE ";
        out += f.name;
        out += ' ';
        out += type_name(f.kind);
        out += '\n';
        for (const auto& [labels, s] : data.series) {
            switch (f.kind) {
                case Kind::Counter:
                    sample(out, f, "", labels, fmt::format("{}", s.count));
                    break;
                case Kind::Gauge:
                    sample(out, f, "", labels, format_value(s.value));
                    break;
                case Kind::Histogram: {
                    uint64_t cumulative = 0;
                    for (size_t i = 0; i < s.buckets.size(); ++i) {
                        cumulative += s.buckets[i];
                        const std::string le =
                            i < f.buckets.size() ? format_value(f.buckets[i]) : "+Inf";
                        sample(out, f, "_bucket", labels, fmt::format("{}", cumulative), "le", le);
                    }
                    sample(out, f, "_sum", labels, format_value(s.value));
                    sample(out, f, "_count", labels, fmt::format("{}", s.count));
                    break;
                }
            }
        }
    }
    return out;
}

}  // namespace sp::obs
