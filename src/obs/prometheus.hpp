// SPDX-License-Identifier: Apache-2.0
// Renders a MetricSet in the Prometheus text exposition format, version
// 0.0.4: what GET /metrics and `sallyportctl metrics` return. Pure.
#pragma once

#include <string>
#include <string_view>

#include "obs/metrics.hpp"

namespace sp::obs {

/// The Content-Type of render()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

/// Every family of `set` in name order, each with "# HELP" and "# TYPE"
/// lines and its series in label order; histograms as cumulative _bucket
/// series (le="+Inf" last), _sum and _count. Label values and help texts
/// are escaped as the format asks (backslash, double quote, newline).
/// Families whose name or labels are invalid (check_family) are left out.
[[nodiscard]] std::string render(const MetricSet& set);

/// A sample value as the format writes it: integers without a fraction,
/// "NaN", "+Inf", "-Inf".
[[nodiscard]] std::string format_value(double v);

}  // namespace sp::obs
