// SPDX-License-Identifier: Apache-2.0
#include "relay/shard_report.hpp"

namespace sp::relay {

void ShardReport::merge(const ShardReport& other) {
    sessions += other.sessions;
    up_bytes += other.up_bytes;
    down_bytes += other.down_bytes;
    for (const auto& [id, p] : other.pools) {
        PoolLoad& mine = pools[id];
        if (mine.agent.empty()) {
            mine.agent = p.agent;
        }
        mine.idle += p.idle;
        mine.target += p.target;
    }
    for (const auto& [name, n] : other.agent_sessions) {
        agent_sessions[name] += n;
    }
    for (const auto& [address, l] : other.listeners) {
        ListenerLoad& mine = listeners[address];
        if (mine.service.empty()) {
            mine.service = l.service;
        }
        mine.accepts += l.accepts;
        mine.sessions += l.sessions;
        for (const auto& [reason, n] : l.refusals) {
            mine.refusals[reason] += n;
        }
    }
}

}  // namespace sp::relay
