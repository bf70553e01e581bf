// SPDX-License-Identifier: Apache-2.0
// The agent's relay-link events (sallyport(7) EVENTS): relay-connected,
// relay-disconnected, config-applied and config-rejected, formatted from
// the state machine's event actions in one place.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "control/agent_fsm.hpp"
#include "control/frame.hpp"

namespace sp::agent {

/// RELAY_ADDR, KEY_ID (empty in certificate mode).
void log_relay_connected(const std::string& relay, const std::string& key_id,
                         const control::link_do::Connected& c);
/// RELAY_ADDR, DURATION_MS (how long it was Ready; none if it never was),
/// REASON; error priority for what an operator must fix.
void log_relay_disconnected(const std::string& relay,
                            std::optional<std::chrono::milliseconds> up_for,
                            const control::link_do::Disconnected& d);
/// config-rejected per listen entry the relay refused, then config-applied.
void log_config_result(const std::string& relay, const control::ConfigResult& r);

}  // namespace sp::agent
