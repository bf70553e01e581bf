// SPDX-License-Identifier: Apache-2.0
// A MetricSet with one family of each kind, labels that need escaping and
// the process families: what the renderer test and promtool check.
#pragma once

#include <array>
#include <chrono>
#include <string_view>

#include "obs/metrics.hpp"
#include "obs/process.hpp"

namespace sp::obs::test {

inline constexpr std::array<std::string_view, 1> kService = {"service"};
inline constexpr std::array<std::string_view, 2> kServiceDirection = {"service", "direction"};
inline constexpr Family kSessions{"sallyport_sessions_total", "Sessions opened.", Kind::Counter,
                                  kService};
inline constexpr Family kBytes{"sallyport_session_bytes_total",
                               "Bytes moved by sessions, by direction.", Kind::Counter,
                               kServiceDirection};
inline constexpr Family kOpen{"sallyport_sessions_open", "Sessions open now.", Kind::Gauge,
                              kService};
inline constexpr std::array<double, 3> kBuckets = {0.005, 0.5, 1};
inline constexpr Family kSetup{"sallyport_session_setup_seconds",
                               "From accept to paired data channel.", Kind::Histogram, kService,
                               kBuckets};

inline MetricSet sample_set() {
    MetricSet s;
    s.add(kSessions, {"sftp"}, 3);
    s.add(kSessions, {"we\"ird\\name\n"}, 1);
    s.add(kBytes, {"sftp", "up"}, 1048576);
    s.add(kBytes, {"sftp", "down"}, 42);
    s.set(kOpen, {"sftp"}, 2);
    s.observe(kSetup, {"sftp"}, 0.004);
    s.observe(kSetup, {"sftp"}, 0.5);
    s.observe(kSetup, {"sftp"}, 7);
    add_process_metrics(
        s, {"sallyport-relay", "0.1.0",
            std::chrono::system_clock::time_point(std::chrono::seconds(1795253400)), 2, false});
    return s;
}

}  // namespace sp::obs::test
