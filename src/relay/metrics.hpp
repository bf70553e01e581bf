// SPDX-License-Identifier: Apache-2.0
// The relay's Prometheus metric families, named once (sallyport(7),
// METRICS, lists them): the per-worker ones a relay::Shard keeps in its own
// obs::MetricSet, and the control thread's (agents, listeners, round trips)
// that relay/admin_commands.cpp fills at scrape time.
#pragma once

#include <array>
#include <string_view>

#include "obs/metrics.hpp"

namespace sp::relay::metric {

inline constexpr std::array<std::string_view, 1> kServiceLabel = {"service"};
inline constexpr std::array<std::string_view, 1> kAgentLabel = {"agent"};
inline constexpr std::array<std::string_view, 2> kServiceAgent = {"service", "agent"};
inline constexpr std::array<std::string_view, 3> kServiceAgentDirection = {"service", "agent",
                                                                           "direction"};
inline constexpr std::array<std::string_view, 2> kServiceReason = {"service", "reason"};

// --- per worker (relay::Shard) ---

inline constexpr obs::Family kClientAccepts{
    "sallyport_client_accepts_total",
    "Client connections accepted on the public listeners, before any check.", obs::Kind::Counter,
    kServiceLabel};
inline constexpr obs::Family kSessions{
    "sallyport_sessions_total", "Sessions opened: clients paired with an agent's data channel.",
    obs::Kind::Counter, kServiceAgent};
inline constexpr obs::Family kSessionsOpen{"sallyport_sessions_open", "Sessions open now.",
                                           obs::Kind::Gauge, kServiceAgent};
/// direction="up": client to backend (BYTES_UP); "down": backend to client.
/// Open sessions count what they delivered so far, so the counter grows
/// during a long transfer rather than in one step at its end.
inline constexpr obs::Family kSessionBytes{
    "sallyport_session_bytes_total",
    "Bytes delivered by sessions; direction up is client to backend, down backend to client.",
    obs::Kind::Counter, kServiceAgentDirection};
inline constexpr obs::Family kClientRejections{
    "sallyport_client_rejections_total",
    "Client connections refused, by REASON of the client-rejected event.", obs::Kind::Counter,
    kServiceReason};
inline constexpr obs::Family kPoolIdle{"sallyport_pool_idle_channels",
                                       "Idle data channels the relay holds for an agent.",
                                       obs::Kind::Gauge, kAgentLabel};
inline constexpr obs::Family kSessionSetup{
    "sallyport_session_setup_seconds",
    "From a client's accept to its pairing with a data channel (binding header sent).",
    obs::Kind::Histogram, kServiceLabel, obs::kLatencyBuckets};
inline constexpr obs::Family kSessionDuration{
    "sallyport_session_duration_seconds", "How long closed sessions lasted.", obs::Kind::Histogram,
    kServiceLabel, obs::kDurationBuckets};

// Forward proxy (relay/outbound_connect.hpp), per worker too.
inline constexpr std::array<std::string_view, 2> kAgentDirection = {"agent", "direction"};
inline constexpr std::array<std::string_view, 1> kReasonLabel = {"reason"};
inline constexpr obs::Family kOutboundSessions{
    "sallyport_outbound_sessions_total",
    "Forward-proxy sessions opened: an outbound connection spliced with the agent's data channel.",
    obs::Kind::Counter, kAgentLabel};
inline constexpr obs::Family kOutboundOpen{"sallyport_outbound_sessions_open",
                                           "Forward-proxy sessions open now.", obs::Kind::Gauge,
                                           kAgentLabel};
/// direction="up": the internal application to the partner (BYTES_UP).
inline constexpr obs::Family kOutboundBytes{
    "sallyport_outbound_bytes_total",
    "Bytes delivered by closed forward-proxy sessions; up is the internal application to the "
    "partner.",
    obs::Kind::Counter, kAgentDirection};
inline constexpr obs::Family kOutboundRejections{
    "sallyport_outbound_rejections_total",
    "Forward-proxy requests refused, by REASON of the outbound-rejected event.", obs::Kind::Counter,
    kReasonLabel};

// --- control thread ---

inline constexpr obs::Family kAgentsConnected{
    "sallyport_agents_connected", "Agents whose control channel is up (Ready).", obs::Kind::Gauge};
inline constexpr obs::Family kListenersOpen{
    "sallyport_listeners_open", "Public listening addresses held for agents.", obs::Kind::Gauge};
inline constexpr obs::Family kControlRtt{
    "sallyport_agent_control_rtt_seconds",
    "Round-trip time of an agent's control connection, as the kernel measures it (TCP_INFO).",
    obs::Kind::Gauge, kAgentLabel};

}  // namespace sp::relay::metric
