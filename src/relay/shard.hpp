// SPDX-License-Identifier: Apache-2.0
// The relay's per-worker data-plane state: the worker's public listeners, its
// idle data channels (by agent), and clients waiting for one. Pairs each
// admitted client with a channel, writes the binding header and hands both
// sockets to the worker's splice pump. Lives on one worker thread; the
// control thread reaches it only through Worker::post().
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/addr.hpp"
#include "base/unique_fd.hpp"
#include "io/worker.hpp"
#include "relay/admission.hpp"

namespace sp::relay {

/// What a worker needs to know of a service: immutable, replaced whole.
struct ServicePolicy {
    std::string name;
    std::vector<Cidr> allow_clients;
    std::vector<Cidr> deny_clients;
    uint32_t max_sessions = 0;
    uint32_t affinity_s = 0;
    std::vector<uint64_t> agents;  // connection ids, in join order
};

/// Calls back into the control thread (posted there, never run inline).
struct ShardHooks {
    /// A client of `service` waits on worker `worker`: ask an agent for a channel.
    std::function<void(unsigned worker, const std::string& service)> need_channel;
    /// A channel of `agent` was used on worker `worker`: issue a replacement.
    std::function<void(unsigned worker, uint64_t agent)> channel_used;
};

/// SESSION_IDs: `base` is random per process start (so ids stay unique
/// across restarts in the journal), `stride` the number of workers.
struct SessionIds {
    uint64_t base = 0;
    uint64_t stride = 1;
};

struct ShardLimits {
    std::chrono::milliseconds pending_timeout{10000};
    uint32_t idle_timeout_s = 0;
};

class Shard final {
public:
    Shard(unsigned worker_index, SessionIds ids, Admission& admission, ShardHooks hooks,
          ShardLimits limits);

    // All of these run on the worker thread.
    void add_listener(io::Worker& w, uint64_t key, UniqueFd fd, std::string service,
                      SocketAddress listen);
    void remove_listener(io::Worker& w, uint64_t key);
    /// Stops accepting everywhere (drain); established sessions go on.
    void remove_all_listeners(io::Worker& w);
    void set_service(std::shared_ptr<const ServicePolicy> policy);
    void remove_service(io::Worker& w, const std::string& name);
    /// A data channel arrived. It goes to the oldest waiting client its
    /// agent can serve; else it is kept idle while this worker holds fewer
    /// than `max_idle` of the agent's channels, and closed otherwise (an
    /// on-demand channel whose client gave up must not hold an fd forever).
    void add_channel(io::Worker& w, uint64_t agent, std::string agent_name, UniqueFd fd,
                     size_t max_idle);
    /// The agent is gone: its idle channels close; sessions already paired
    /// with its channels go on (they no longer need the control channel).
    void drop_agent(uint64_t agent);
    void set_limits(ShardLimits limits) { limits_ = limits; }

    [[nodiscard]] size_t idle_channels() const noexcept;
    [[nodiscard]] size_t pending_clients() const noexcept { return pending_.size(); }

private:
    struct Pending {
        uint64_t id;
        UniqueFd client;
        SocketAddress peer;
        SocketAddress local;
        std::string service;
        uint64_t timer;
    };
    struct Idle {
        UniqueFd fd;
        std::string agent_name;
    };

    void on_accept(io::Worker& w, const std::string& service, UniqueFd client,
                   const SocketAddress& peer, const SocketAddress& local);
    void on_accept_error(io::Worker& w, const SocketAddress& listen, int err, bool paused);
    /// Pairs a client with an idle channel of one of `policy`'s agents.
    /// Returns false (client untouched) when no usable channel is idle.
    bool try_pair(io::Worker& w, const ServicePolicy& policy, UniqueFd& client,
                  const SocketAddress& peer, const SocketAddress& local);
    void reject(const SocketAddress& peer, const SocketAddress& local, const std::string& service,
                std::string_view reason, std::string_view message);
    void on_pending_timeout(io::Worker& w, uint64_t pending_id);

    unsigned index_;
    SessionIds ids_;
    uint64_t next_session_ = 0;
    uint64_t next_pending_ = 1;
    Admission& admission_;
    ShardHooks hooks_;
    ShardLimits limits_;
    std::map<uint64_t, uint64_t> listeners_;  // key -> io listener id
    std::unordered_map<std::string, std::shared_ptr<const ServicePolicy>> services_;
    std::unordered_map<uint64_t, std::deque<Idle>> idle_;  // agent -> channels
    std::deque<Pending> pending_;
    size_t rotate_ = 0;
    LogLimiter reject_log_{5, std::chrono::milliseconds(1000)};
    LogLimiter resource_log_{1, std::chrono::milliseconds(5000)};
};

}  // namespace sp::relay
