// SPDX-License-Identifier: Apache-2.0
// The agent's Prometheus families (sallyport(7) METRICS), defined once.
// Per-worker families are kept in each shard's obs::MetricSet without a
// lock and gathered by io::Sharded::map_reduce; the relay-link families are
// filled on the control thread, which owns the links.
#pragma once

#include <array>
#include <string_view>

#include "obs/metrics.hpp"

namespace sp::agent::metrics {

inline constexpr std::array<std::string_view, 1> kServiceLabel = {"service"};
inline constexpr std::array<std::string_view, 2> kServiceDirection = {"service", "direction"};
inline constexpr std::array<std::string_view, 2> kServiceReason = {"service", "reason"};
inline constexpr std::array<std::string_view, 1> kRelayLabel = {"relay"};
inline constexpr std::array<std::string_view, 2> kServiceBackend = {"service", "backend"};

inline constexpr obs::Family kSessions{
    "sallyport_agent_sessions_total",
    "Sessions the agent placed on a backend, by service.",
    obs::Kind::Counter,
    kServiceLabel,
};
inline constexpr obs::Family kSessionsOpen{
    "sallyport_agent_sessions_open",
    "Sessions open now, by service.",
    obs::Kind::Gauge,
    kServiceLabel,
};
inline constexpr obs::Family kBytes{
    "sallyport_agent_bytes_total",
    "Bytes delivered, by service and direction (up: client to backend; down: backend to "
    "client); open sessions count what they moved so far.",
    obs::Kind::Counter,
    kServiceDirection,
};
inline constexpr obs::Family kConnectFailures{
    "sallyport_agent_backend_connect_failures_total",
    "Backend connects that failed, by service and reason (ECONNREFUSED, timeout, ...); a "
    "session that another backend took counts here too.",
    obs::Kind::Counter,
    kServiceReason,
};
inline constexpr obs::Family kConnectSeconds{
    "sallyport_agent_backend_connect_seconds",
    "From a data channel's binding to its backend connection being ready (retries and "
    "PROXY header included), for sessions that started.",
    obs::Kind::Histogram,
    kServiceLabel,
    obs::kLatencyBuckets,
};
inline constexpr obs::Family kSessionSeconds{
    "sallyport_agent_session_duration_seconds",
    "How long closed sessions lasted, by service.",
    obs::Kind::Histogram,
    kServiceLabel,
    obs::kDurationBuckets,
};
inline constexpr obs::Family kBackendUp{
    "sallyport_agent_backend_up",
    "1 while new sessions may go to the backend, 0 while the agent skips it (down by its "
    "health checks, or a refused connect in the last 5 s).",
    obs::Kind::Gauge,
    kServiceBackend,
};
inline constexpr obs::Family kIdleChannels{
    "sallyport_agent_idle_channels",
    "Data channels dialled to a relay and waiting for a client (its pool on this agent).",
    obs::Kind::Gauge,
    kRelayLabel,
};
inline constexpr obs::Family kRelayUp{
    "sallyport_agent_relay_up",
    "1 while the control channel to the relay is up (Ready), else 0.",
    obs::Kind::Gauge,
    kRelayLabel,
};
inline constexpr obs::Family kRelayRtt{
    "sallyport_agent_relay_rtt_seconds",
    "The kernel's smoothed TCP round-trip time of the control channel to the relay (only "
    "while it is up).",
    obs::Kind::Gauge,
    kRelayLabel,
};

}  // namespace sp::agent::metrics
