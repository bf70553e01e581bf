// SPDX-License-Identifier: Apache-2.0
// What one relay worker tells the operator interface: plain snapshots a
// relay::Shard copies out on its own thread (io::Sharded::map_reduce), and
// how the control thread adds them up. Pure: no sockets, no clock, no JSON
// (relay/admin_commands.cpp turns the sums into answers).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "admin/session_filter.hpp"
#include "base/addr.hpp"

namespace sp::relay {

/// One open session as `sessions` lists it.
struct SessionRow {
    uint64_t id = 0;     // SESSION_ID
    std::string client;  // "ip:port" / "[v6]:port"
    std::string service;
    std::string agent;
    double age_s = 0;
    uint64_t up_bytes = 0;    // client to backend, delivered so far
    uint64_t down_bytes = 0;  // backend to client
};

/// `sessions --service S --client CIDR`: each criterion given must hold.
using SessionFilter = admin::SessionFilter;

/// One agent's data-channel pool on one worker, or summed over them.
struct PoolLoad {
    std::string agent;    // name
    uint64_t idle = 0;    // channels open and waiting for a client
    uint64_t target = 0;  // idle channels the adaptive pool keeps now
};

/// One public listening address.
struct ListenerLoad {
    std::string service;
    uint64_t accepts = 0;                                   // connections accepted since it opened
    uint64_t sessions = 0;                                  // open now
    std::map<std::string, uint64_t, std::less<>> refusals;  // by client-rejected REASON
};

/// One worker's counts, or the relay's once merged.
struct ShardReport {
    uint64_t sessions = 0;  // open now
    uint64_t up_bytes = 0;  // delivered since start, open sessions included
    uint64_t down_bytes = 0;
    std::map<uint64_t, PoolLoad> pools;                           // by agent connection id
    std::map<std::string, uint64_t, std::less<>> agent_sessions;  // open, by agent name
    std::map<std::string, ListenerLoad, std::less<>> listeners;   // by address "ip:port"

    /// Adds `other` in: counts sum, and an entry only one side has is
    /// taken as it is. Names (pool agent, listener service) come from
    /// whichever side has one.
    void merge(const ShardReport& other);
};

}  // namespace sp::relay
