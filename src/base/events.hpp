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
};

struct EventSpec {
    Ev id;
    std::string_view name;  // SALLYPORT_EVENT= value
    Level level;            // default priority (sallyport(7) gives it per event)
};

/// In enum order; a unit test checks that kEvents[i].id == Ev(i).
inline constexpr std::array kEvents = {
    EventSpec{Ev::Started, "started", Level::Info},
    EventSpec{Ev::Stopping, "stopping", Level::Info},
    EventSpec{Ev::ControlListen, "control-listen", Level::Info},
    EventSpec{Ev::BindFailed, "bind-failed", Level::Error},
    EventSpec{Ev::AgentConnected, "agent-connected", Level::Info},
    EventSpec{Ev::AgentRejected, "agent-rejected", Level::Warn},
    EventSpec{Ev::AgentDisconnected, "agent-disconnected", Level::Info},
    EventSpec{Ev::ConfigApplied, "config-applied", Level::Info},
    EventSpec{Ev::ConfigRejected, "config-rejected", Level::Warn},
    EventSpec{Ev::ListenerOpen, "listener-open", Level::Info},
    EventSpec{Ev::ListenerClosed, "listener-closed", Level::Info},
    EventSpec{Ev::ListenersSuspended, "listeners-suspended", Level::Warn},
    EventSpec{Ev::SessionOpen, "session-open", Level::Info},
    EventSpec{Ev::SessionClose, "session-close", Level::Info},
    EventSpec{Ev::ClientRejected, "client-rejected", Level::Warn},
    EventSpec{Ev::BackendFailed, "backend-failed", Level::Warn},
    EventSpec{Ev::Reload, "reload", Level::Info},
    EventSpec{Ev::ReloadFailed, "reload-failed", Level::Error},
    EventSpec{Ev::RelayConnected, "relay-connected", Level::Info},
    EventSpec{Ev::RelayDisconnected, "relay-disconnected", Level::Warn},
    EventSpec{Ev::ResourceLimit, "resource-limit", Level::Warn},
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
