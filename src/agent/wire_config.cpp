// SPDX-License-Identifier: Apache-2.0
#include "agent/wire_config.hpp"

#include <algorithm>

#include "config.h"

namespace sp::agent {

control::Hello make_hello(const config::AgentSection& agent) {
    control::Hello h;
    h.agent_name = agent.name;
    h.software_version = SP_VERSION;
    h.pool_size = static_cast<uint16_t>(std::min<uint32_t>(agent.pool, UINT16_MAX));
    h.heartbeat_ms = control::kDefaultHeartbeatMs;
    return h;
}

control::Config make_config(const std::vector<config::Service>& services, uint32_t generation) {
    control::Config c;
    c.generation = generation;
    for (const auto& s : services) {
        control::ServiceSpec w;
        w.name = s.name;
        for (const auto& l : s.listen) {
            w.listen.push_back(l.to_string());
        }
        for (const auto& a : s.allow_clients) {
            w.allow_clients.push_back(a.to_string());
        }
        for (const auto& d : s.deny_clients) {
            w.deny_clients.push_back(d.to_string());
        }
        w.max_sessions = s.max_sessions;
        w.affinity_s = s.affinity_s;
        c.services.push_back(std::move(w));
    }
    return c;
}

}  // namespace sp::agent
