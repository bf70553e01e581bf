// SPDX-License-Identifier: Apache-2.0
// The pieces of sallyport-bench's --json output that more than one workload
// prints: quoted strings and latency histograms. bench/report.py reads them.
#pragma once

#include <string>
#include <string_view>

#include "histogram.hpp"

namespace sp::bench {

/// `s` as a JSON string literal, quotes included.
[[nodiscard]] std::string json_str(std::string_view s);

/// `"latency_us":{count,min,mean,p50,p90,p99,p999,max},"cdf_us":[[us,fraction],...]`,
/// members to splice into an object (no braces around them).
[[nodiscard]] std::string hist_json(const Histogram& h);

}  // namespace sp::bench
