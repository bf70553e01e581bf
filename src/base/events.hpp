// SPDX-License-Identifier: Apache-2.0
// Every event the programs emit, typed: an enum for call sites (a typo does
// not compile) and one table of names, default priorities and the fields
// each event must and may carry. sallyport(7)'s EVENTS section is checked
// against it (tests/man/check-events), and so is every emitted event in a
// build with assertions (check_fields below).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
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
    RelayDrain,
    RelayResume,
    BackendDown,
    BackendUp,
    OutboundOpen,
    OutboundClose,
    OutboundRejected,
    Upgrade,
    UpgradeFailed,
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
inline constexpr std::string_view kFallbackAddr = "FALLBACK_ADDR";
inline constexpr std::string_view kChecks = "CHECKS";
inline constexpr std::string_view kDestination = "DESTINATION";
inline constexpr std::string_view kResolvedAddr = "RESOLVED_ADDR";

/// Every field an event may carry; the lists in kEvents use these names only.
inline constexpr std::array kAll = {
    kSessionId,   kService,      kClientAddr, kClientPort,  kListenAddr,  kAgent,      kAgentAddr,
    kBackendAddr, kRelayAddr,    kKeyId,      kBytesUp,     kBytesDown,   kDurationMs, kReason,
    kSuppressed,  kFallbackAddr, kChecks,     kDestination, kResolvedAddr};
}  // namespace f

/// The fields of one event, as space-separated journal names. A field is
/// carried when its value is non-empty. `must`: on every entry of either
/// daemon; `relay`/`agent`: also on every entry of that daemon; `may`: when
/// they apply. Any other field is a bug.
struct FieldSpec {
    std::string_view must;
    std::string_view relay;
    std::string_view agent;
    std::string_view may;
};

struct EventSpec {
    Ev id;
    std::string_view name;  // SALLYPORT_EVENT= value
    Level level;            // default priority (sallyport(7) gives it per event)
    Side side;
    FieldSpec fields;
};

/// In enum order; a static_assert in events.cpp checks that kEvents[i].id ==
/// Ev(i) and that every listed field is one of f::kAll.
// One event per row, its fields on the continuation line.
// clang-format off
inline constexpr std::array kEvents = {
    EventSpec{Ev::Started, "started", Level::Info, Side::Both,
              {"", "", "AGENT", ""}},
    EventSpec{Ev::Stopping, "stopping", Level::Info, Side::Both,
              {"", "", "", ""}},
    EventSpec{Ev::ControlListen, "control-listen", Level::Info, Side::Relay,
              {"LISTEN_ADDR", "", "", ""}},
    EventSpec{Ev::BindFailed, "bind-failed", Level::Error, Side::Both,
              {"LISTEN_ADDR REASON", "", "", "SERVICE AGENT"}},
    EventSpec{Ev::AgentConnected, "agent-connected", Level::Info, Side::Relay,
              {"AGENT AGENT_ADDR KEY_ID", "", "", ""}},
    EventSpec{Ev::AgentRejected, "agent-rejected", Level::Notice, Side::Relay,
              {"AGENT_ADDR REASON", "", "", "AGENT KEY_ID SUPPRESSED"}},
    EventSpec{Ev::AgentDisconnected, "agent-disconnected", Level::Notice, Side::Relay,
              {"AGENT AGENT_ADDR KEY_ID DURATION_MS REASON", "", "", ""}},
    EventSpec{Ev::ConfigApplied, "config-applied", Level::Info, Side::Both,
              {"", "AGENT", "RELAY_ADDR", ""}},
    EventSpec{Ev::ConfigRejected, "config-rejected", Level::Warn, Side::Both,
              {"REASON", "AGENT", "RELAY_ADDR", "SERVICE LISTEN_ADDR"}},
    EventSpec{Ev::ListenerOpen, "listener-open", Level::Info, Side::Relay,
              {"SERVICE LISTEN_ADDR AGENT", "", "", ""}},
    EventSpec{Ev::ListenerClosed, "listener-closed", Level::Info, Side::Relay,
              {"SERVICE LISTEN_ADDR REASON", "", "", "AGENT"}},
    EventSpec{Ev::ListenersSuspended, "listeners-suspended", Level::Warn, Side::Relay,
              {"AGENT", "", "", ""}},
    EventSpec{Ev::SessionOpen, "session-open", Level::Info, Side::Both,
              {"SESSION_ID SERVICE CLIENT_ADDR CLIENT_PORT LISTEN_ADDR",
               "AGENT", "BACKEND_ADDR RELAY_ADDR", ""}},
    EventSpec{Ev::SessionClose, "session-close", Level::Info, Side::Both,
              {"SESSION_ID SERVICE CLIENT_ADDR CLIENT_PORT LISTEN_ADDR "
               "BYTES_UP BYTES_DOWN DURATION_MS REASON",
               "AGENT", "BACKEND_ADDR RELAY_ADDR", ""}},
    EventSpec{Ev::ClientRejected, "client-rejected", Level::Notice, Side::Relay,
              {"CLIENT_ADDR CLIENT_PORT LISTEN_ADDR SERVICE REASON", "", "", "SUPPRESSED"}},
    EventSpec{Ev::BackendFailed, "backend-failed", Level::Warn, Side::Both,
              {"REASON", "SESSION_ID AGENT", "RELAY_ADDR",
               "SESSION_ID SERVICE CLIENT_ADDR BACKEND_ADDR FALLBACK_ADDR SUPPRESSED"}},
    EventSpec{Ev::Reload, "reload", Level::Info, Side::Both,
              {"", "", "", ""}},
    EventSpec{Ev::ReloadFailed, "reload-failed", Level::Error, Side::Both,
              {"REASON", "", "", ""}},
    EventSpec{Ev::RelayConnected, "relay-connected", Level::Info, Side::Agent,
              {"RELAY_ADDR", "", "", "KEY_ID"}},
    EventSpec{Ev::RelayDisconnected, "relay-disconnected", Level::Warn, Side::Agent,
              {"RELAY_ADDR REASON", "", "", "DURATION_MS"}},
    EventSpec{Ev::ResourceLimit, "resource-limit", Level::Warn, Side::Both,
              {"REASON", "", "", "LISTEN_ADDR RELAY_ADDR SUPPRESSED"}},
    EventSpec{Ev::AgentDrain, "agent-drain", Level::Info, Side::Both,
              {"AGENT", "AGENT_ADDR", "", ""}},
    EventSpec{Ev::AgentResume, "agent-resume", Level::Info, Side::Both,
              {"AGENT", "AGENT_ADDR", "", ""}},
    EventSpec{Ev::RelayDrain, "relay-drain", Level::Notice, Side::Relay,
              {"", "", "", ""}},
    EventSpec{Ev::RelayResume, "relay-resume", Level::Notice, Side::Relay,
              {"", "", "", ""}},
    EventSpec{Ev::BackendDown, "backend-down", Level::Warn, Side::Agent,
              {"SERVICE BACKEND_ADDR REASON CHECKS", "", "", ""}},
    EventSpec{Ev::BackendUp, "backend-up", Level::Notice, Side::Agent,
              {"SERVICE BACKEND_ADDR CHECKS", "", "", ""}},
    EventSpec{Ev::OutboundOpen, "outbound-open", Level::Info, Side::Both,
              {"SESSION_ID DESTINATION RESOLVED_ADDR", "AGENT", "CLIENT_ADDR CLIENT_PORT RELAY_ADDR", ""}},
    EventSpec{Ev::OutboundClose, "outbound-close", Level::Info, Side::Both,
              {"SESSION_ID DESTINATION RESOLVED_ADDR BYTES_UP BYTES_DOWN DURATION_MS REASON",
               "AGENT", "CLIENT_ADDR CLIENT_PORT RELAY_ADDR", ""}},
    EventSpec{Ev::OutboundRejected, "outbound-rejected", Level::Notice, Side::Both,
              {"DESTINATION REASON", "AGENT", "CLIENT_ADDR CLIENT_PORT",
               "RESOLVED_ADDR RELAY_ADDR SESSION_ID SUPPRESSED"}},
    EventSpec{Ev::Upgrade, "upgrade", Level::Notice, Side::Both,
              {"REASON", "", "", ""}},
    EventSpec{Ev::UpgradeFailed, "upgrade-failed", Level::Error, Side::Both,
              {"REASON", "", "", ""}},
};
// clang-format on

[[nodiscard]] constexpr const EventSpec& spec(Ev e) noexcept {
    return kEvents[static_cast<size_t>(e)];
}
[[nodiscard]] constexpr std::string_view to_string(Ev e) noexcept {
    return spec(e).name;
}

/// Which daemon this process is (main() sets it before anything logs):
/// check_fields then holds events to that side's lists. Unset: Both, which
/// accepts either side's fields.
void set_side(Side side) noexcept;

/// Empty when `fields` carry every field `e` must carry on `side` and none
/// it may not; else what is wrong, in words. A field with an empty value is
/// absent (event() leaves it out), so it neither counts as carried nor as
/// unknown.
/// Pure; the emitters below call it in builds with assertions and abort on
/// a violation (SP_BUG), so every test that makes a daemon log checks it.
[[nodiscard]] std::string check_fields(Ev e, Side side, std::initializer_list<Field> fields);

/// REASON for an errno (either sign): its name ("ECONNREFUSED"), "timeout"
/// for ETIMEDOUT, "errno-N" for a number without a name. Journal queries
/// match it exactly, which a strerror() sentence would make hard.
[[nodiscard]] std::string errno_reason(int err);

/// Emits `e` at its table priority.
void event(Ev e, std::initializer_list<Field> fields, std::string_view message) noexcept;
/// Emits `e` at `level` (a deviation from the table's default, for example
/// an error-class relay-disconnected).
void event(Level level, Ev e, std::initializer_list<Field> fields,
           std::string_view message) noexcept;

}  // namespace sp::log
