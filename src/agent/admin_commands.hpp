// SPDX-License-Identifier: Apache-2.0
// The agent's commands on its status socket (src/admin/docs/admin-protocol.md
// section 7) and its metrics: status fields, relays, services, sessions,
// drain and resume. Per-worker state is gathered by io::Sharded::map_reduce
// (each shard copies its part on its own thread, no lock); the relay links
// are read on the control thread through AgentView.
#pragma once

#include <utility>
#include <vector>

#include "agent/link_id.hpp"
#include "agent/relay_link.hpp"
#include "agent/shard.hpp"
#include "config/agent_config.hpp"
#include "daemon/shell.hpp"
#include "io/sharded.hpp"

namespace sp::agent {

/// What the commands ask of the agent. Control thread only.
class AgentView {
public:
    /// Every configured relay link, in configuration order.
    [[nodiscard]] virtual std::vector<std::pair<LinkId, LinkStatus>> links() const = 0;
    [[nodiscard]] virtual const config::AgentConfig& agent_config() const = 0;
    /// Operator drain (true) or resume (false): tell every relay, log
    /// agent-drain / agent-resume. No-op when already in that state.
    virtual void set_draining(bool draining) = 0;
    [[nodiscard]] virtual bool draining() const = 0;

protected:
    AgentView() = default;
    AgentView(const AgentView&) = default;
    AgentView& operator=(const AgentView&) = default;
    ~AgentView() = default;
};

/// Registers relays, services, sessions, drain and resume, the agent's
/// status fields and its metrics (agent/metrics.hpp) on `shell`'s admin.
/// `shards` and `view` are borrowed and must outlive the shell's run().
void register_admin(daemon::Shell& shell, io::Sharded<Shard>& shards, AgentView& view);

}  // namespace sp::agent
