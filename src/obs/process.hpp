// SPDX-License-Identifier: Apache-2.0
// The metrics every sallyport daemon exports about itself, whatever its
// role: build information, start time, workers, draining. The daemon shell
// adds them to each scrape; the relay and the agent add their own families.
#pragma once

#include <array>
#include <chrono>
#include <string>
#include <string_view>

#include "obs/metrics.hpp"

namespace sp::obs {

inline constexpr std::array<std::string_view, 2> kBuildInfoLabels = {"program", "version"};
inline constexpr Family kBuildInfo{"sallyport_build_info",
                                   "Always 1; the labels name the program and its version.",
                                   Kind::Gauge, kBuildInfoLabels};
inline constexpr Family kStartTime{"sallyport_start_time_seconds",
                                   "When the process started, in seconds since the Unix epoch.",
                                   Kind::Gauge};
inline constexpr Family kWorkers{"sallyport_workers", "Data-plane worker threads.", Kind::Gauge};
inline constexpr Family kDraining{
    "sallyport_draining",
    "1 while the daemon accepts no new sessions (sallyportctl drain, or stopping), else 0.",
    Kind::Gauge};

struct ProcessInfo {
    std::string_view program;  // "sallyport-relay"
    std::string_view version;
    std::chrono::system_clock::time_point started;
    unsigned workers = 0;
    bool draining = false;
};

/// Sets the four families above in `set`.
void add_process_metrics(MetricSet& set, const ProcessInfo& info);

}  // namespace sp::obs
