// SPDX-License-Identifier: Apache-2.0
// The relay's per-worker state: the worker's public listeners and service
// policies, its control-port front door, its data channels, and the clients
// waiting for one. Pairs each admitted client with a channel, writes the
// binding header and hands both sockets to the worker's splice pump. Lives
// on one worker thread; others reach it only by message (Shards::invoke_on).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "balance/sticky_table.hpp"
#include "base/addr.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "io/sharded.hpp"
#include "io/worker.hpp"
#include "obs/metrics.hpp"
#include "relay/admission.hpp"
#include "relay/channels.hpp"
#include "relay/front_door.hpp"
#include "relay/outbound_connect.hpp"
#include "relay/session_events.hpp"
#include "relay/shard_report.hpp"

namespace sp::relay {

/// What a worker needs to know of a service: immutable, replaced whole.
struct ServicePolicy {
    std::string name;
    std::vector<Cidr> allow_clients;
    std::vector<Cidr> deny_clients;
    uint32_t max_sessions = 0;
    uint32_t affinity_s = 0;
    std::vector<uint64_t> agents;  // connection ids, in join order
    // No agent, listeners held for listener_grace_ms: clients wait (within
    // pending_timeout_ms) for an agent to come back instead of being refused.
    bool held = false;
};

/// Calls to the control thread. Both are posted there, never run inline,
/// and may be called from any worker.
struct ShardHooks {
    /// A TLS connection for an agent session (FrontDoor::Host::tls).
    std::function<void(UniqueFd fd, const SocketAddress& peer,
                       std::chrono::steady_clock::time_point accepted)>
        adopt_tls;
    /// Tokens this worker made and registered for `agent`: send them in
    /// OPEN_CHANNELS. `initial`: the share of the HELLO pool that issue()
    /// was asked for (the control thread gathers those into one frame).
    std::function<void(unsigned worker, uint64_t agent, std::vector<control::Token> tokens,
                       bool initial)>
        send_tokens;
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
    std::chrono::milliseconds token_lifetime{10000};  // 2 x handshake_timeout_ms
};

/// Unauthenticated control-port connections per relay, and the share one
/// address may hold (split evenly over the workers).
inline constexpr size_t kMaxHandshaking = 4096;
inline constexpr size_t kHandshakingPerAddressDivisor = 8;

class Shard final : public FrontDoor::Host {
public:
    using Clock = std::chrono::steady_clock;

    /// `peers` (borrowed) reaches the other workers' shards, for channels
    /// whose token another worker issued.
    Shard(unsigned worker_index, io::Sharded<Shard>& peers, SessionIds ids, Admission& admission,
          ShardHooks hooks, ShardLimits limits, std::shared_ptr<const AgentRules> rules,
          uint64_t hash_key);

    // --- worker thread only (from others: Shards::invoke_on) ---
    /// Arms the 1 s tick (token expiry, pool upkeep, handshake sweep).
    void start(io::Worker& w);
    void add_control_listener(io::Worker& w, UniqueFd fd, const SocketAddress& addr) {
        door_.add_listener(w, std::move(fd), addr);
    }
    void remove_control_listener(io::Worker& w, const SocketAddress& addr) {
        door_.remove_listener(w, addr);
    }
    void set_agent_rules(std::shared_ptr<const AgentRules> rules) {
        door_.set_rules(std::move(rules));
    }
    void add_listener(io::Worker& w, uint64_t key, UniqueFd fd, std::string service,
                      SocketAddress listen);
    void remove_listener(io::Worker& w, uint64_t key);
    /// Drain: stops accepting, clients and agents alike; sessions go on.
    void remove_all_listeners(io::Worker& w);
    /// Clients parked while the service had no agent (held) go to an agent
    /// once it has one again.
    void set_service(io::Worker& w, std::shared_ptr<const ServicePolicy> policy);
    void remove_service(io::Worker& w, const std::string& name);
    void set_limits(ShardLimits limits) {
        limits_ = limits;
        channels_.set_token_lifetime(limits.token_lifetime);
    }

    /// The agent is Ready (`cap`: this worker's share of its pool) / gone
    /// (its tokens are void and idle channels close; paired sessions go on).
    void add_agent(io::Worker& w, uint64_t agent, std::string name, unsigned cap);
    void drop_agent(io::Worker& w, uint64_t agent);
    /// The agent is draining (AGENT_STATE): its channels serve a client only
    /// when no other agent serves the client's service; clients waiting for
    /// it move to another agent. false undoes it. Its idle channels stay.
    void set_agent_draining(io::Worker& w, uint64_t agent, bool draining);
    /// Makes `count` tokens of `agent` (this worker's share of its HELLO
    /// pool), registers them, and sends them back through send_tokens.
    void issue(uint64_t agent, unsigned count);
    /// A channel whose token this worker issued: verify it, then give it to
    /// the oldest waiting client its agent can serve, or keep it idle.
    void arrive(io::Worker& w, UniqueFd fd, const SocketAddress& peer, const control::Token& t,
                bool early);

    /// Forward proxy: connects for `job` (relay/outbound_connect.hpp) and
    /// reports through it. Refused with Limit while the operator drains
    /// this relay or it stops, as clients are.
    void connect_outbound(io::Worker& w, OutboundJob job);
    /// Counts a forward-proxy refusal the control thread decided.
    void count_outbound_rejected(std::string_view reason);

    // FrontDoor::Host
    void tls(UniqueFd fd, const SocketAddress& peer, Clock::time_point accepted) override;
    void channel(io::Worker& w, UniqueFd fd, const SocketAddress& peer, const control::Token& t,
                 bool early) override;

    [[nodiscard]] size_t idle_channels() const noexcept { return channels_.idle(); }
    [[nodiscard]] size_t pending_clients() const noexcept { return pending_.size(); }

    // --- operator interface: worker thread; the control thread asks by
    // map_reduce (relay/admin_commands.hpp) ---

    /// The operator's drain: while on, every new client is refused at once
    /// (client-rejected REASON=draining). Listeners stay open; clients
    /// already waiting for a channel and established sessions go on.
    void set_draining(bool on) noexcept { draining_ = on; }
    [[nodiscard]] bool draining() const noexcept { return draining_; }
    /// This worker's counts now; `w` is this shard's worker.
    [[nodiscard]] ShardReport report(const io::Worker& w) const;
    /// This worker's open sessions that pass `filter`.
    [[nodiscard]] std::vector<SessionRow> sessions(const io::Worker& w,
                                                   const SessionFilter& filter) const;
    /// Ends the open session whose SESSION_ID is `id` with an abortive
    /// close (RST both ways; its session-close says REASON=operator), before
    /// this returns. False when this worker holds no such open session.
    [[nodiscard]] bool close_session(io::Worker& w, uint64_t id);
    /// A copy of this worker's metrics as of now: open sessions and idle
    /// channels set as gauges, and open sessions' bytes so far added to the
    /// byte counters (so they grow during a transfer, not at its end).
    [[nodiscard]] obs::MetricSet metrics(const io::Worker& w) const;

private:
    struct Pending {
        uint64_t id;
        UniqueFd client;
        SocketAddress peer;
        SocketAddress local;
        std::string service;
        uint64_t agent;  // asked for a channel on this client's behalf
        uint64_t timer;
        uint64_t listener;  // key of the listener that accepted it
        Clock::time_point accepted;
        bool pinned = false;  // holds a slot in its owner shard's affinity table
        bool parked = false;  // its service had no agent (held): waits for one
    };
    /// What the shard keeps of an open session, for listings and metrics.
    struct Live {
        SessionInfo info;
        uint64_t listener = 0;
    };
    struct SessionIdHash {
        size_t operator()(io::SessionId id) const noexcept {
            return std::hash<uint64_t>{}((uint64_t{id.slot} << 16) | id.gen);
        }
    };
    struct ListenerStat {
        std::string address;
        ListenerLoad load;  // its `sessions` is counted from live_ when asked
    };

    void on_tick(io::Worker& w);
    void on_accept(io::Worker& w, uint64_t listener, const std::string& service, UniqueFd client,
                   const SocketAddress& peer, const SocketAddress& local);
    void on_accept_error(const SocketAddress& listen, int err, bool paused);
    /// Pairs a client with an idle channel of one of `policy`'s agents.
    /// Returns false (client untouched) when no usable channel is idle.
    bool try_pair(io::Worker& w, const ServicePolicy& policy, UniqueFd& client,
                  const SocketAddress& peer, const SocketAddress& local, uint64_t listener,
                  Clock::time_point accepted);
    /// Sends the binding header on `ch` and starts the session; false when
    /// the channel turned out dead (client untouched).
    /// `pinned`: the client holds an affinity slot, given back when the
    /// session ends.
    bool bind(io::Worker& w, const ServicePolicy& policy, Channels::Channel& ch, UniqueFd& client,
              const SocketAddress& peer, const SocketAddress& local, uint64_t listener,
              Clock::time_point accepted, bool pinned);
    [[nodiscard]] size_t waiting_for(uint64_t agent) const;
    /// `agent` may take a new client of `policy`: Ready here, and not
    /// draining unless every other Ready agent of the service drains too.
    [[nodiscard]] bool eligible(const ServicePolicy& policy, uint64_t agent) const;
    /// Clients waiting for `agent` ask another eligible agent of their
    /// service instead, if there is one.
    void move_waiting(io::Worker& w, uint64_t agent);
    /// The next eligible agent of `policy` in rotation, 0 when none is.
    [[nodiscard]] uint64_t choose_agent(const ServicePolicy& policy);
    /// With affinity_s: asks the client's owner shard (balance::owner_shard)
    /// which agent waiting client `pending_id` uses. Its table keeps a client
    /// address on one agent while it has sessions open and for affinity_s
    /// after, on every worker and across reloads; a new client gets the
    /// eligible agent whose name scores highest for its address (rendezvous:
    /// an agent joining or leaving moves only its share). `retry`: the
    /// client's agent went away; its slot is given back first.
    void ask_owner(io::Worker& w, const ServicePolicy& policy, uint64_t pending_id,
                   const SocketAddress& peer, bool retry);
    /// The owner's answer: `agent` 0 when no agent is eligible.
    void on_agent_chosen(io::Worker& w, uint64_t pending_id, uint64_t agent,
                         const std::string& client);
    /// Gives a client's affinity slot back to its owner shard.
    void unpin(const std::string& client);
    /// Lets `agent`'s pool issue tokens once this loop iteration is done,
    /// so every client and channel event of one batch of completions is
    /// answered by one OPEN_CHANNELS rather than one each.
    void refill(io::Worker& w, uint64_t agent);
    void run_refills();
    /// Logs client-rejected (rate-limited) and counts it, per listener
    /// when `listener` names one (0: unknown).
    void reject(const SocketAddress& peer, const SocketAddress& local, const std::string& service,
                std::string_view reason, std::string_view message, uint64_t listener = 0);
    /// A session ended (its on_close): forgets it, counts its bytes and duration.
    void on_session_end(io::SessionId id, const SessionInfo& info, const io::SessionEnd& end);
    void on_pending_timeout(uint64_t pending_id);
    /// Queues a client that waits for a data channel, bounded by
    /// pending_timeout_ms: for `agent`, or for its owner's answer (agent 0),
    /// or `parked` while its service has no agent (held). Returns its id.
    uint64_t enqueue(io::Worker& w, UniqueFd client, const SocketAddress& peer,
                     const SocketAddress& local, const std::string& service, uint64_t agent,
                     uint64_t listener, Clock::time_point accepted, bool parked);
    /// Sends waiting clients of `policy` that are parked, or wait on an agent
    /// it no longer lists or that left, to an agent of it (by their owner
    /// shard's table with affinity).
    void reroute_waiting(io::Worker& w, const ServicePolicy& policy);

    unsigned index_;
    io::Sharded<Shard>& peers_;
    SessionIds ids_;
    uint64_t next_session_ = 0;
    uint64_t next_pending_ = 1;
    Admission& admission_;
    ShardHooks hooks_;
    ShardLimits limits_;
    FrontDoor door_;
    Channels channels_;
    OutboundConnects outbound_;
    std::map<uint64_t, uint64_t> listeners_;  // key -> io listener id
    std::unordered_map<std::string, std::shared_ptr<const ServicePolicy>> services_;
    std::deque<Pending> pending_;
    std::unordered_set<uint64_t> draining_agents_;  // agents that asked for no new sessions
    size_t rotate_ = 0;
    // Clients whose owner shard this is (about 200 bytes each, bounded).
    balance::StickyTable affinity_{65536};
    std::vector<uint64_t> refill_;  // agents whose pool may issue tokens
    bool refill_posted_ = false;
    bool stopping_ = false;
    LogLimiter reject_log_{5, std::chrono::milliseconds(1000)};
    LogLimiter resource_log_{1, std::chrono::milliseconds(5000)};

    // Operator interface: single writer (this worker), copied out by message.
    std::unordered_map<io::SessionId, Live, SessionIdHash> live_;
    std::map<uint64_t, ListenerStat> listener_stats_;  // by listener key
    obs::MetricSet metrics_;
    uint64_t closed_up_ = 0;  // bytes of the sessions already closed
    uint64_t closed_down_ = 0;
    bool draining_ = false;
};

}  // namespace sp::relay
