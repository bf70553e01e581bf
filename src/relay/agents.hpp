// SPDX-License-Identifier: Apache-2.0
// The relay's connected agents, on the control thread: one AgentSession per
// control connection, the directory of names they hold, and what a session
// asks of the rest of the relay (listeners for its CONFIG, tokens for its
// pool, cleanup when it leaves). Tokens are made and registered by the
// worker that will verify them (relay/channels.hpp); this thread only sends
// them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/poller.hpp"
#include "control/agent_directory.hpp"
#include "control/tls.hpp"
#include "io/sharded.hpp"
#include "relay/admission.hpp"
#include "relay/agent_session.hpp"
#include "relay/listeners.hpp"
#include "relay/preauth.hpp"
#include "relay/shard.hpp"

namespace sp::relay {

class Agents final : public AgentSession::Host {
public:
    struct Options {
        std::string software_version;
    };

    /// All borrowed; `tls` is the context new sessions handshake with.
    Agents(Poller& poller, Listeners& listeners, io::Sharded<Shard>& shards, LogLimiter& reject_log,
           control::TlsContext tls, Options options);
    ~Agents() override;

    /// Once a second: heartbeats and liveness per session, token expiry.
    void tick(Poller::Clock::time_point now);
    /// Sends GOODBYE(bad-key) to every authenticated session for which
    /// `revoked(identity)` is true (a reload removed or changed its key).
    void revoke(const std::function<bool(const std::string& identity)>& revoked);
    /// Closes every session whose peer address `rules` (the front door's,
    /// after a reload changed allow_agents or deny_agents) refuse, with
    /// GOODBYE(not-allowed) once TLS is up: a control channel kept open
    /// would keep its listeners while every data channel it dials is
    /// refused. Connections queued for adopt_tls are checked against them.
    void deny(std::shared_ptr<const AgentRules> rules);
    /// SIGTERM: GOODBYE(shutdown) to every session; no new ones after. A
    /// binary upgrade (`upgrade`) says GOODBYE(reload) instead: the agents
    /// reconnect to the successor.
    void shutdown(bool upgrade = false);
    /// Reload: agents authenticate with `tls` from the next handshake on.
    /// With `reauthenticate` (the mode or the agent CA changed), every
    /// connection made under the old one is closed with GOODBYE(reload) and
    /// its listeners wait for it to return (as for a replaced connection).
    void set_tls(control::TlsContext tls, bool reauthenticate);
    [[nodiscard]] size_t ready_count() const;
    /// The Ready sessions, by connection id, for status listings. Borrowed:
    /// valid until the control loop runs again.
    [[nodiscard]] std::vector<const AgentSession*> ready_sessions() const;

    /// From a worker's front door: a TLS connection accepted at `accepted`.
    /// Starts its session, unless too many are mid-handshake (in total or
    /// from that address).
    void adopt_tls(UniqueFd fd, const SocketAddress& peer, Poller::Clock::time_point accepted);
    /// From a worker: tokens it made and registered for `agent`. Sent in one
    /// OPEN_CHANNELS, or, for the HELLO pool (`initial`), gathered from all
    /// workers into one. Dropped when the agent is gone (its tokens are void
    /// on the workers already).
    void send_tokens(unsigned worker, uint64_t agent, std::vector<control::Token> tokens,
                     bool initial);
    void set_handshake_timeout(std::chrono::milliseconds t) { handshake_timeout_ = t; }
    /// Who serves OUTBOUND_REQUEST (relay/outbound.hpp); unset: answered
    /// `disabled`.
    using OutboundFn =
        std::function<void(const AgentSession& s, const control::OutboundRequest& r)>;
    void set_outbound(OutboundFn fn) { outbound_ = std::move(fn); }
    /// Sends an OUTBOUND_RESULT to the agent on connection `agent`; false
    /// when that connection is no longer Ready (the result is dropped).
    bool answer_outbound(uint64_t agent, const control::OutboundResult& r);

    // AgentSession::Host
    bool claim(AgentSession& s) override;
    void ready(AgentSession& s) override;
    control::ConfigResult apply_config(AgentSession& s, const control::Config& cfg) override;
    void issue_tokens(AgentSession& s, unsigned count) override;
    void set_draining(AgentSession& s, bool draining) override;
    void outbound(AgentSession& s, const control::OutboundRequest& r) override;
    void gone(AgentSession& s) override;
    void finished(AgentSession& s) override;

private:
    struct Agent {
        std::unique_ptr<AgentSession> session;
        bool handshaking = true;    // holds a slot in preauth_
        unsigned initial_left = 0;  // workers yet to answer for the HELLO pool
        std::vector<control::Token> initial;
    };

    void leave_handshake(Agent& a, const AgentSession& s);

    Poller& poller_;
    Listeners& listeners_;
    io::Sharded<Shard>& shards_;
    LogLimiter& reject_log_;
    control::TlsContext tls_;
    Options options_;
    std::chrono::milliseconds handshake_timeout_{5000};
    std::map<uint64_t, Agent> agents_;
    control::AgentDirectory directory_;
    PreAuth preauth_;
    uint64_t next_id_ = 1;
    // Sessions the admin shut out (key removed, address denied): their
    // services get no listener grace.
    std::set<uint64_t> refused_;
    // Sessions a newer connection of the same agent replaced (a restart or
    // a binary upgrade of the agent): their listeners wait for its CONFIG.
    std::set<uint64_t> replaced_;  // also: told to re-authenticate
    // The agent address rules as of the last reload (none before one).
    std::shared_ptr<const AgentRules> rules_;
    bool stopping_ = false;
    OutboundFn outbound_;
};

}  // namespace sp::relay
