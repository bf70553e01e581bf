// SPDX-License-Identifier: Apache-2.0
// A relay + agent deployment on 127.0.0.1 for integration tests: writes the
// keys and configs into a temp dir, starts the real binaries by PID, and
// stops them when the fixture goes away.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "admin/protocol.hpp"
#include "net.hpp"
#include "proc.hpp"

namespace sp::test {

struct Deployment {
    TempDir dir;
    uint16_t control_port = 0;
    std::string data_path = "splice";
    std::string relay_extra;   // TOML lines appended to [relay]'s file
    std::string limits_extra;  // TOML lines of the relay's [limits] section
    // Most tests check what happens when an agent leaves: at once, as with
    // listener_grace_ms = 0. The grace tests set it.
    uint32_t listener_grace_ms = 0;
    std::string agent_extra;                // TOML lines appended to [agent] of every agent file
    std::vector<std::string> relay_prefix;  // e.g. {"prlimit", "--nofile=96:96", "--"}
    Process relay;
    Process agent;

    Deployment();
    ~Deployment();

    /// The relay's key file gets one line per name; agent_key(name) the
    /// agent's copy.
    void make_keys(const std::vector<std::string>& names);
    std::string agent_key(const std::string& name);

    std::string write_relay_config(const std::string& extra = "");
    /// `services` is the [[service]] blocks' TOML; the status socket is
    /// dir/<file without .toml>.sock.
    std::string write_agent_config(const std::string& name, const std::string& services,
                                   unsigned pool = 4, const std::string& key_name = "agent1",
                                   const std::string& file = "agent.toml");

    void start_relay(const std::string& extra = "");
    Process start_agent_process(const std::string& config_path, const std::string& log);
    void start_agent(const std::string& services, unsigned pool = 4);

    /// The relay's status socket (dir/relay.sock).
    [[nodiscard]] std::string relay_socket() const { return dir.path() + "/relay.sock"; }
    /// One status-socket command to the relay: its data, or nullopt when
    /// the relay does not answer ok (not up yet, or refused).
    [[nodiscard]] std::optional<admin::Json> relay_query(const std::string& cmd,
                                                         const admin::Json& args = {}) const;
    /// Polls `cmd` every 50 ms until `done` holds for its data, up to
    /// `timeout`: how tests wait for the relay's state, where the status
    /// socket gives the answer, instead of grepping its log.
    bool wait_relay(const std::string& cmd, const std::function<bool(const admin::Json&)>& done,
                    std::chrono::milliseconds timeout) const;
    /// Waits until the relay holds exactly `n` open sessions.
    bool wait_relay_sessions(uint64_t n, std::chrono::milliseconds timeout) const;
    /// Waits until the relay has a public listener for `service`.
    bool wait_relay_listener(const std::string& service, std::chrono::milliseconds timeout) const;

    /// One [[service]] block; health checks off unless `extra` has a check_
    /// key (tests count the connections their backends see).
    static std::string service(const std::string& name, const std::string& listen,
                               const std::string& backend, const std::string& extra = "");
};

[[nodiscard]] std::string relay_bin();
[[nodiscard]] std::string agent_bin();

/// Sends `payload` then half-closes, returns everything read until EOF.
[[nodiscard]] std::string exchange(uint16_t port, const std::string& payload);

}  // namespace sp::test
