// SPDX-License-Identifier: Apache-2.0
// The relay's connected agents, on the control thread: one AgentSession per
// control connection, the directory of names they hold, and what a session
// asks of the rest of the relay (listeners for its CONFIG, tokens for its
// pool, cleanup when it leaves). Also where data channels are verified and
// routed to the worker that owns their token.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/poller.hpp"
#include "control/agent_directory.hpp"
#include "control/tls.hpp"
#include "relay/admission.hpp"
#include "relay/agent_session.hpp"
#include "relay/front_door.hpp"
#include "relay/listeners.hpp"
#include "relay/shard.hpp"
#include "relay/shards.hpp"
#include "relay/tokens.hpp"

namespace sp::relay {

class Agents final : public AgentSession::Host, public FrontDoor::Host {
public:
    struct Options {
        std::string software_version;
        /// Token lifetime: 2 x handshake_timeout_ms (protocol doc 6.3).
        std::chrono::milliseconds token_lifetime{10000};
    };

    /// All borrowed; `tls` is the context new sessions handshake with.
    Agents(Poller& poller, Listeners& listeners, Shards<Shard>& shards, LogLimiter& reject_log,
           control::TlsContext tls, uint64_t hash_key, Options options);
    ~Agents() override;

    void set_token_lifetime(std::chrono::milliseconds t) { options_.token_lifetime = t; }

    /// Once a second: heartbeats and liveness per session, token expiry.
    void tick(Poller::Clock::time_point now);
    /// Sends GOODBYE(bad-key) to every authenticated session for which
    /// `revoked(identity)` is true (a reload removed or changed its key).
    void revoke(const std::function<bool(const std::string& identity)>& revoked);
    /// SIGTERM: GOODBYE(shutdown) to every session; no new ones after.
    void shutdown();
    [[nodiscard]] size_t ready_count() const;

    /// From the shards (posted to the control thread): a client of
    /// `service` waits on `worker`; a channel of `agent` was used there.
    void need_channel(unsigned worker, const std::string& service);
    void channel_used(unsigned worker, uint64_t agent);

    // FrontDoor::Host
    void adopt_tls(UniqueFd fd, const SocketAddress& peer,
                   Poller::Clock::time_point accepted) override;
    void channel(UniqueFd fd, const SocketAddress& peer, const control::Token& t) override;
    [[nodiscard]] size_t handshaking() const override { return handshaking_; }
    void set_handshake_timeout(std::chrono::milliseconds t) { handshake_timeout_ = t; }

    // AgentSession::Host
    bool claim(AgentSession& s) override;
    void ready(AgentSession& s) override;
    control::ConfigResult apply_config(AgentSession& s, const control::Config& cfg) override;
    std::vector<control::Token> issue_tokens(AgentSession& s, unsigned count) override;
    void gone(AgentSession& s) override;
    void finished(AgentSession& s) override;

private:
    struct Agent {
        std::unique_ptr<AgentSession> session;
        bool handshaking = true;  // counted in handshaking_
        unsigned next_worker = 0;
    };

    [[nodiscard]] std::vector<control::Token> mint(uint64_t agent, unsigned worker, unsigned count);
    void send_tokens(uint64_t agent, unsigned worker, unsigned count);

    Poller& poller_;
    Listeners& listeners_;
    Shards<Shard>& shards_;
    LogLimiter& reject_log_;
    control::TlsContext tls_;
    Options options_;
    std::chrono::milliseconds handshake_timeout_{5000};
    std::map<uint64_t, Agent> agents_;
    control::AgentDirectory directory_;
    TokenTable tokens_;
    uint64_t next_id_ = 1;
    size_t handshaking_ = 0;
    size_t rotate_ = 0;
    bool stopping_ = false;
};

}  // namespace sp::relay
