// SPDX-License-Identifier: Apache-2.0
// The forward proxy on one io worker (control-protocol.md sections 9 and
// 10): connects to a destination the control thread already checked
// (non-blocking, one address after another, each bounded by
// connect_timeout_ms), issues the token the agent's data channel presents,
// and, when that channel arrives, writes its binding header and splices it
// with the outbound socket like an inbound session. Worker thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/addr.hpp"
#include "base/log_limiter.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "io/session_table.hpp"
#include "io/worker.hpp"
#include "obs/metrics.hpp"
#include "relay/tokens.hpp"

namespace sp::relay {

/// What one connect attempt ends with, reported once per job.
struct OutboundOutcome {
    uint64_t request = 0;  // OutboundJob::request
    control::OutboundStatus status = control::OutboundStatus::Ok;
    int error = 0;           // errno for ConnectFailed, else 0
    control::Token token{};  // on Ok
    std::string resolved;    // the address connected to (Ok) or tried last
};

/// A request the control thread admitted (allow list, limits, DNS done).
struct OutboundJob {
    uint64_t request = 0;  // the control thread's id for it
    uint64_t agent = 0;    // connection id of the agent's control channel
    std::string agent_name;
    std::string destination;                           // DESTINATION as requested
    std::vector<SocketAddress> addresses;              // allowed ones, in order; not empty
    std::chrono::milliseconds connect_timeout{10000};  // per address
    std::chrono::milliseconds token_lifetime{10000};
    /// Called once on the worker with the outcome (hands it to the control
    /// thread by message).
    std::function<void(OutboundOutcome)> report;
    /// Called once on the worker after an Ok outcome, when the session slot
    /// is free again: the session ended, or its token expired or was voided.
    std::function<void()> release;
};

class OutboundConnects final {
public:
    using Clock = std::chrono::steady_clock;
    /// A fresh SESSION_ID (the shard's sequence, shared with inbound sessions).
    using NextSessionId = std::function<uint64_t()>;
    /// True while `agent` is Ready on this worker.
    using AgentAlive = std::function<bool(uint64_t agent)>;

    OutboundConnects(unsigned worker, uint64_t hash_key, NextSessionId next_id, AgentAlive alive);
    ~OutboundConnects();
    OutboundConnects(const OutboundConnects&) = delete;
    OutboundConnects& operator=(const OutboundConnects&) = delete;

    /// Connects to job.addresses in order; reports Ok with a token
    /// registered here, or the last address's failure (Timeout when its
    /// connect timed out, else ConnectFailed with errno; ECONNABORTED when
    /// the agent is gone before or while connecting).
    void start(io::Worker& w, OutboundJob job);
    /// A data channel presenting `t` (this worker issued it): when `t` is
    /// one of ours, takes `fd`, starts the session (or drops both sockets
    /// when the channel sent bytes early or broke) and returns true. False
    /// and `fd` untouched when `t` is not an outbound token.
    /// `idle_timeout_s`: as for inbound sessions ([limits] idle_timeout_s).
    [[nodiscard]] bool redeem(io::Worker& w, UniqueFd& fd, const control::Token& t, bool early,
                              uint32_t idle_timeout_s);
    /// The agent left Ready: its attempts are abandoned, its unused tokens
    /// void and their sockets closed. Its open sessions go on.
    void drop_agent(io::Worker& w, uint64_t agent);
    /// Once a second: tokens not redeemed in time close their sockets
    /// (outbound-rejected REASON=timeout).
    void tick(Clock::time_point now);

    [[nodiscard]] size_t open_sessions() const noexcept { return live_.size(); }
    [[nodiscard]] size_t waiting() const noexcept { return granted_.size(); }
    /// This worker's outbound metrics (open sessions as a gauge per agent).
    [[nodiscard]] obs::MetricSet metrics() const;

    struct Attempt;

private:
    struct Granted {
        uint64_t agent = 0;
        std::string agent_name;
        std::string destination;
        UniqueFd fd;
        SocketAddress remote;
        std::function<void()> release;
    };
    struct Live {
        uint64_t id = 0;
        std::string agent_name;
        std::string destination;
        std::string resolved;
    };

    void try_next(io::Worker& w, uint64_t id);
    void on_connected(io::Worker& w, uint64_t id, int res);
    void finish(uint64_t id, OutboundOutcome outcome);
    void grant(io::Worker& w, uint64_t id);
    void expired(uint64_t key, std::string_view reason);

    unsigned worker_;
    NextSessionId next_id_;
    AgentAlive alive_;
    TokenTable tokens_;  // Grant::agent holds the key of granted_
    std::unordered_map<uint64_t, std::unique_ptr<Attempt>> attempts_;
    std::unordered_map<uint64_t, Granted> granted_;
    std::unordered_map<uint64_t, Live> live_;  // by (slot << 16 | gen) of the session
    uint64_t next_ = 1;
    obs::MetricSet metrics_;
    log::LogLimiter reject_log_{5, std::chrono::milliseconds(1000)};  // per agent name
};

}  // namespace sp::relay
