// SPDX-License-Identifier: Apache-2.0
// One worker's data channels (protocol doc section 6.3): the tokens this
// worker issues (made and registered here, so a channel can never arrive
// before its token is known; a hello is verified by one hash lookup, on the
// worker, never on the control thread), the idle channels of each agent, and
// each agent's adaptive pool, which issues tokens in batches. Worker thread
// only.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/addr.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "relay/admission.hpp"
#include "relay/pool.hpp"
#include "relay/tokens.hpp"

namespace sp::relay {

class Channels final {
public:
    using Clock = std::chrono::steady_clock;

    struct Channel {
        uint64_t agent = 0;
        std::string agent_name;
        UniqueFd fd;
    };
    /// Sends freshly registered tokens to `agent` (posted to the control
    /// thread, which puts them in one OPEN_CHANNELS).
    using SendFn = std::function<void(uint64_t agent, std::vector<control::Token> tokens)>;

    Channels(unsigned worker, uint64_t hash_key, SendFn send);

    /// Protocol doc 6.3: 2 x handshake_timeout_ms.
    void set_token_lifetime(std::chrono::milliseconds t) { token_lifetime_ = t; }

    /// The agent is Ready: `cap` is this worker's share of its pool.
    void add_agent(uint64_t agent, std::string name, unsigned cap);
    /// The agent left Ready: its tokens are void, its idle channels close.
    void drop_agent(uint64_t agent);
    [[nodiscard]] bool serves(uint64_t agent) const { return agents_.contains(agent); }
    /// The agent's name (empty when not served): what affinity hashes.
    [[nodiscard]] std::string_view name(uint64_t agent) const {
        const auto it = agents_.find(agent);
        return it == agents_.end() ? std::string_view() : std::string_view(it->second.name);
    }
    /// Makes and registers up to `count` tokens of `agent` and returns them
    /// (none when the agent is unknown, at its outstanding cap, or the RNG
    /// failed). The caller sends them.
    [[nodiscard]] std::vector<control::Token> issue(uint64_t agent, unsigned count,
                                                    Clock::time_point now);

    /// A channel whose hello named this worker. Returns it when its token
    /// is valid (the token is used up either way) and it sent nothing after
    /// the hello (`early` false); otherwise closes it and logs (a bad token
    /// at debug level, rate-limited; early bytes as agent-rejected, rate-
    /// limited) and returns nullopt.
    [[nodiscard]] std::optional<Channel> redeem(UniqueFd fd, const SocketAddress& peer,
                                                const control::Token& t, bool early,
                                                Clock::time_point now);
    /// Logs a token no worker of this relay can have issued (rate-limited,
    /// debug): same line as an unknown one, so the two cannot be told apart.
    void reject_token(const SocketAddress& peer);
    /// A channel no waiting client took: kept idle up to the agent's cap,
    /// closed beyond it (an on-demand channel whose client gave up).
    void keep(Channel ch);
    /// An idle channel of `agent` that is still open and silent, or nullopt.
    /// Dead ones found on the way are closed and counted.
    [[nodiscard]] std::optional<Channel> take(uint64_t agent);
    /// A taken channel carried a session / turned out dead on first write.
    void paired(uint64_t agent);
    void dead(uint64_t agent);
    /// Issues and sends tokens if `agent`'s pool is low or `waiting` clients
    /// wait for it (one batch, see PoolPolicy::want).
    void replenish(uint64_t agent, size_t waiting);
    /// Once a second: expires tokens, updates each pool's demand, closes
    /// idle channels above target, replenishes. `waiting(agent)`: clients
    /// waiting for that agent on this worker.
    void tick(Clock::time_point now, const std::function<size_t(uint64_t)>& waiting);

    [[nodiscard]] size_t idle() const noexcept;
    [[nodiscard]] size_t idle(uint64_t agent) const;
    [[nodiscard]] size_t outstanding(uint64_t agent) const { return tokens_.outstanding(agent); }

    /// One agent's pool on this worker, for status listings and metrics.
    struct PoolView {
        uint64_t agent = 0;
        std::string name;
        size_t idle = 0;
        unsigned target = 0;  // PoolPolicy::target()
    };
    /// Every agent this worker serves, in no particular order.
    [[nodiscard]] std::vector<PoolView> pools() const;

private:
    struct Agent {
        std::string name;
        PoolPolicy policy;
        std::deque<UniqueFd> idle;
    };

    unsigned worker_;
    TokenTable tokens_;
    SendFn send_;
    std::chrono::milliseconds token_lifetime_{10000};
    std::unordered_map<uint64_t, Agent> agents_;
    LogLimiter token_log_{5, std::chrono::milliseconds(1000)};
    LogLimiter early_log_{1, std::chrono::milliseconds(5000)};
};

}  // namespace sp::relay
