// SPDX-License-Identifier: Apache-2.0
// Every event the programs emit, typed: an enum for call sites (a typo does
// not compile) and one table of names and default priorities, from which
// sallyport(7)'s EVENTS section is checked (tests/man/check-events).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "base/event.hpp"

namespace sp::log {

enum class Ev : uint8_t {
    Started,
    Stopping,
    ControlListen,
    BindFailed,
    AgentConnected,
    AgentRejected,
    AgentDisconnected,
    ConfigApplied,
    ConfigRejected,
    ListenerOpen,
    ListenerClosed,
    ListenersSuspended,
    SessionOpen,
    SessionClose,
    ClientRejected,
    BackendFailed,
    Reload,
    ReloadFailed,
    RelayConnected,
    RelayDisconnected,
    ResourceLimit,
    AgentDrain,
    AgentResume,
};

/// Which daemon emits an event.
enum class Side : uint8_t { Relay = 1, Agent = 2, Both = 3 };

/// Field names, typed once: a misspelt field does not compile.
namespace f {
inline constexpr std::string_view kSessionId = "SESSION_ID";
inline constexpr std::string_view kService = "SERVICE";
inline constexpr std::string_view kClientAddr = "CLIENT_ADDR";
inline constexpr std::string_view kClientPort = "CLIENT_PORT";
inline constexpr std::string_view kListenAddr = "LISTEN_ADDR";
inline constexpr std::string_view kAgent = "AGENT";
inline constexpr std::string_view kAgentAddr = "AGENT_ADDR";
inline constexpr std::string_view kBackendAddr = "BACKEND_ADDR";
inline constexpr std::string_view kRelayAddr = "RELAY_ADDR";
inline constexpr std::string_view kKeyId = "KEY_ID";
inline constexpr std::string_view kBytesUp = "BYTES_UP";
inline constexpr std::string_view kBytesDown = "BYTES_DOWN";
inline constexpr std::string_view kDurationMs = "DURATION_MS";
inline constexpr std::string_view kReason = "REASON";
inline constexpr std::string_view kSuppressed = "SUPPRESSED";
}  // namespace f

struct EventSpec {
    Ev id;
    std::string_view name;  // SALLYPORT_EVENT= value
    Level level;            // default priority (sallyport(7) gives it per event)
    Side side;
};

/// In enum order; a unit test checks that kEvents[i].id == Ev(i).
inline constexpr std::array kEvents = {
    EventSpec{Ev::Started, "started", Level::Info, Side::Both},
    EventSpec{Ev::Stopping, "stopping", Level::Info, Side::Both},
    EventSpec{Ev::ControlListen, "control-listen", Level::Info, Side::Relay},
    EventSpec{Ev::BindFailed, "bind-failed", Level::Error, Side::Relay},
    EventSpec{Ev::AgentConnected, "agent-connected", Level::Info, Side::Relay},
    EventSpec{Ev::AgentRejected, "agent-rejected", Level::Warn, Side::Relay},
    EventSpec{Ev::AgentDisconnected, "agent-disconnected", Level::Info, Side::Relay},
    EventSpec{Ev::ConfigApplied, "config-applied", Level::Info, Side::Both},
    EventSpec{Ev::ConfigRejected, "config-rejected", Level::Warn, Side::Both},
    EventSpec{Ev::ListenerOpen, "listener-open", Level::Info, Side::Relay},
    EventSpec{Ev::ListenerClosed, "listener-closed", Level::Info, Side::Relay},
    EventSpec{Ev::ListenersSuspended, "listeners-suspended", Level::Warn, Side::Relay},
    EventSpec{Ev::SessionOpen, "session-open", Level::Info, Side::Both},
    EventSpec{Ev::SessionClose, "session-close", Level::Info, Side::Both},
    EventSpec{Ev::ClientRejected, "client-rejected", Level::Warn, Side::Relay},
    EventSpec{Ev::BackendFailed, "backend-failed", Level::Warn, Side::Both},
    EventSpec{Ev::Reload, "reload", Level::Info, Side::Both},
    EventSpec{Ev::ReloadFailed, "reload-failed", Level::Error, Side::Both},
    EventSpec{Ev::RelayConnected, "relay-connected", Level::Info, Side::Agent},
    EventSpec{Ev::RelayDisconnected, "relay-disconnected", Level::Warn, Side::Agent},
    EventSpec{Ev::ResourceLimit, "resource-limit", Level::Warn, Side::Both},
    EventSpec{Ev::AgentDrain, "agent-drain", Level::Info, Side::Both},
    EventSpec{Ev::AgentResume, "agent-resume", Level::Info, Side::Both},
};

[[nodiscard]] constexpr const EventSpec& spec(Ev e) noexcept {
    return kEvents[static_cast<size_t>(e)];
}
[[nodiscard]] constexpr std::string_view to_string(Ev e) noexcept {
    return spec(e).name;
}

/// Emits `e` at its table priority.
void event(Ev e, std::initializer_list<Field> fields, std::string_view message) noexcept;
/// Emits `e` at `level` (a deviation from the table's default, for example
/// an error-class relay-disconnected).
void event(Level level, Ev e, std::initializer_list<Field> fields,
           std::string_view message) noexcept;

}  // namespace sp::log
