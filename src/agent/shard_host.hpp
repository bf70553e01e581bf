// SPDX-License-Identifier: Apache-2.0
// What a worker's share of the agent (Shard, BackendConnector) asks of the
// rest of the agent, and the service table it is given. Declared apart so
// both objects depend on this, not on each other's headers or on the App.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/link_id.hpp"
#include "base/unique_function.hpp"
#include "config/agent_config.hpp"
#include "control/frame.hpp"

namespace sp::io {
class Worker;
}

namespace sp::agent {

class Shard;

/// Every method may be called from any worker thread and must not block:
/// implementations post to the thread that owns the state.
class ShardHost {
public:
    /// Look `host` up; the answer arrives as set_address on every shard.
    virtual void resolve(const std::string& host) = 0;
    /// Backend `index` of `service` (service table generation `gen`) refused
    /// a connect: every shard should skip it for a while.
    virtual void backend_down(uint64_t gen, const std::string& service, size_t index) = 0;
    /// The health checks (on shard 0) took backend `index` of `service`
    /// down (`up` false) or brought it back: every shard should skip or
    /// readmit it.
    virtual void backend_health(uint64_t gen, const std::string& service, size_t index,
                                bool up) = 0;
    /// Tell relay `link` that no backend took its session (BACKEND_FAILED).
    virtual void backend_failed(LinkId link, control::BackendFailed msg) = 0;
    /// A session started (+1) or ended (-1): the drain waits for zero.
    virtual void session_count(int delta) = 0;
    /// Runs fn on shard `shard`'s worker, in posting order (a shard asking
    /// a client's affinity owner, and the owner answering).
    virtual void on_shard(unsigned shard, UniqueFunction<void(Shard&, io::Worker&)> fn) = 0;
    [[nodiscard]] virtual unsigned shard_count() const = 0;

protected:
    ~ShardHost() = default;
};

/// The services as the shards need them, with the generation failure marks
/// are checked against. Shared read-only between shards.
struct ServiceTable {
    uint64_t generation = 0;
    std::vector<config::Service> services;
};

}  // namespace sp::agent
