// SPDX-License-Identifier: Apache-2.0
#include "obs/metrics.hpp"

#include <string>

#include <doctest/doctest.h>

#include "obs/prometheus.hpp"
#include "sample.hpp"

using namespace sp::obs;
using namespace sp::obs::test;

namespace {

constexpr std::array<std::string_view, 1> kLe = {"le"};
constexpr std::array<std::string_view, 1> kBadLabel = {"__x"};
constexpr std::array<double, 2> kDescending = {1, 0.5};

}  // namespace

TEST_SUITE("obs.metrics") {
    TEST_CASE("check_family: naming rules of Prometheus and of this project") {
        CHECK(check_family(kSessions).empty());
        CHECK(check_family(kSetup).empty());
        CHECK(check_family(kBuildInfo).empty());
        CHECK(check_family(kStartTime).empty());
        CHECK(check_family(kWorkers).empty());
        CHECK(check_family(kDraining).empty());
        const Family bad[] = {
            {"sessions_total", "h", Kind::Counter},
            {"sallyport_sessions", "h", Kind::Counter},
            {"sallyport_open_total", "h", Kind::Gauge},
            {"sallyport_x-y_total", "h", Kind::Counter},
            {"sallyport_9_total", "", Kind::Counter},
            {"sallyport_latency_seconds", "h", Kind::Histogram},
            {"sallyport_latency_seconds", "h", Kind::Histogram, kLe, kBuckets},
            {"sallyport_latency_seconds", "h", Kind::Histogram, {}, kDescending},
            {"sallyport_latency_count", "h", Kind::Histogram, {}, kBuckets},
            {"sallyport_open", "h", Kind::Gauge, kBadLabel},
            {"sallyport_open", "h", Kind::Gauge, {}, kBuckets},
        };
        for (const auto& f : bad) {
            CAPTURE(f.name);
            CHECK_FALSE(check_family(f).empty());
        }
    }

    TEST_CASE("render: text format 0.0.4, families by name, escaped labels, cumulative buckets") {
        const std::string text = render(sample_set());
        CHECK(text ==
              "# HELP sallyport_build_info Always 1; the labels name the program and its version.\n"
              "# TYPE sallyport_build_info gauge\n"
              "sallyport_build_info{program=\"sallyport-relay\",version=\"0.1.0\"} 1\n"
              "# HELP sallyport_draining 1 while the daemon accepts no new sessions (sallyportctl "
              "drain, or stopping), else 0.\n"
              "# TYPE sallyport_draining gauge\n"
              "sallyport_draining 0\n"
              "# HELP sallyport_session_bytes_total Bytes moved by sessions, by direction.\n"
              "# TYPE sallyport_session_bytes_total counter\n"
              "sallyport_session_bytes_total{service=\"sftp\",direction=\"down\"} 42\n"
              "sallyport_session_bytes_total{service=\"sftp\",direction=\"up\"} 1048576\n"
              "# HELP sallyport_session_setup_seconds From accept to paired data channel.\n"
              "# TYPE sallyport_session_setup_seconds histogram\n"
              "sallyport_session_setup_seconds_bucket{service=\"sftp\",le=\"0.005\"} 1\n"
              "sallyport_session_setup_seconds_bucket{service=\"sftp\",le=\"0.5\"} 2\n"
              "sallyport_session_setup_seconds_bucket{service=\"sftp\",le=\"1\"} 2\n"
              "sallyport_session_setup_seconds_bucket{service=\"sftp\",le=\"+Inf\"} 3\n"
              "sallyport_session_setup_seconds_sum{service=\"sftp\"} 7.504\n"
              "sallyport_session_setup_seconds_count{service=\"sftp\"} 3\n"
              "# HELP sallyport_sessions_open Sessions open now.\n"
              "# TYPE sallyport_sessions_open gauge\n"
              "sallyport_sessions_open{service=\"sftp\"} 2\n"
              "# HELP sallyport_sessions_total Sessions opened.\n"
              "# TYPE sallyport_sessions_total counter\n"
              "sallyport_sessions_total{service=\"sftp\"} 3\n"
              "sallyport_sessions_total{service=\"we\\\"ird\\\\name\\n\"} 1\n"
              "# HELP sallyport_start_time_seconds When the process started, in seconds since "
              "the Unix epoch.\n"
              "# TYPE sallyport_start_time_seconds gauge\n"
              "sallyport_start_time_seconds 1795253400\n"
              "# HELP sallyport_workers Data-plane worker threads.\n"
              "# TYPE sallyport_workers gauge\n"
              "sallyport_workers 2\n");
    }

    TEST_CASE("merge: per-worker sets add up, histograms bucket by bucket") {
        MetricSet a;
        a.add(kSessions, {"sftp"}, 2);
        a.set(kOpen, {"sftp"}, 1);
        a.observe(kSetup, {"sftp"}, 0.001);
        MetricSet b;
        b.add(kSessions, {"sftp"}, 5);
        b.add(kSessions, {"https"}, 1);
        b.set(kOpen, {"sftp"}, 3);
        b.observe(kSetup, {"sftp"}, 0.9);
        a.merge(b);
        const auto& fams = a.families();
        const auto& sessions = fams.at(kSessions.name).series;
        CHECK(sessions.at({"sftp"}).count == 7);
        CHECK(sessions.at({"https"}).count == 1);
        CHECK(fams.at(kOpen.name).series.at({"sftp"}).value == 4);
        const auto& h = fams.at(kSetup.name).series.at({"sftp"});
        CHECK(h.count == 2);
        CHECK(h.buckets == std::vector<uint64_t>{1, 0, 1, 0});
    }

    TEST_CASE("counter handle: updates the series it names; declare shows a family at zero") {
        MetricSet s;
        Counter c = s.counter(kSessions, {"sftp"});
        c.add();
        c.add(4);
        CHECK(s.families().at(kSessions.name).series.at({"sftp"}).count == 5);
        MetricSet d;
        d.declare(kWorkers);
        d.declare(kOpen);
        CHECK(render(d) ==
              "# HELP sallyport_sessions_open Sessions open now.\n"
              "# TYPE sallyport_sessions_open gauge\n"
              "# HELP sallyport_workers Data-plane worker threads.\n"
              "# TYPE sallyport_workers gauge\n"
              "sallyport_workers 0\n");
    }

    TEST_CASE("format_value: integers plain, fractions shortest, special values by name") {
        CHECK(format_value(0) == "0");
        CHECK(format_value(12345678) == "12345678");
        CHECK(format_value(0.25) == "0.25");
        CHECK(format_value(-3) == "-3");
        CHECK(format_value(1e20) == "1e+20");
        CHECK(format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
        CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
        CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
    }
}
