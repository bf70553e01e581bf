// SPDX-License-Identifier: Apache-2.0
// The forward proxy's request handling on the control thread
// (control-protocol.md sections 9 and 10): an agent's OUTBOUND_REQUEST is
// checked against [outbound] allow and the limits (relay/outbound_policy),
// its name resolved on resolver threads (relay/name_resolver), every
// address checked again, and the connect handed to an io worker
// (relay/outbound_connect), whose outcome comes back here to be sent as
// OUTBOUND_RESULT. Nothing here blocks; nothing a session needs runs here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "base/log_limiter.hpp"
#include "base/result.hpp"
#include "base/unique_function.hpp"
#include "config/relay_config.hpp"
#include "control/frame.hpp"
#include "io/sharded.hpp"
#include "relay/name_resolver.hpp"
#include "relay/outbound_connect.hpp"
#include "relay/outbound_policy.hpp"

namespace sp::relay {

class Shard;

class Outbound final {
    struct Private {  // passkey: only create() constructs one
        explicit Private() = default;
    };

public:
    struct Hooks {
        /// Any thread: runs `fn` on the control thread later (Shell::post).
        std::function<void(UniqueFunction<void()> fn)> post;
        /// Control thread: sends `r` on connection `agent`; false when it
        /// is no longer Ready.
        std::function<bool(uint64_t agent, const control::OutboundResult& r)> answer;
    };

    /// `cfg` (borrowed) is read at each request, so a reload applies to the
    /// next one. Fails only when the resolver threads cannot start.
    [[nodiscard]] static Result<std::unique_ptr<Outbound>> create(const config::RelayConfig& cfg,
                                                                  io::Sharded<Shard>& shards,
                                                                  Hooks hooks);
    Outbound(const Private&, const config::RelayConfig& cfg, io::Sharded<Shard>& shards,
             Hooks hooks);
    ~Outbound();
    Outbound(const Outbound&) = delete;
    Outbound& operator=(const Outbound&) = delete;

    /// Control thread: OUTBOUND_REQUEST `r` from the agent on connection
    /// `agent` named `agent_name`. Answered exactly once, maybe before this
    /// returns (refusals that need no DNS).
    void request(uint64_t agent, const std::string& agent_name, const control::OutboundRequest& r);

    /// Slots taken now (requests under way plus open sessions).
    [[nodiscard]] uint64_t open() const noexcept { return counts_.total(); }

private:
    struct Waiting {  // a request whose name is being resolved
        uint64_t agent = 0;
        std::string agent_name;
        uint32_t request_id = 0;
        OutboundTarget target;
    };

    void on_resolved(NameResolver::Answer a);
    void dispatch(uint64_t agent, const std::string& agent_name, uint32_t request_id,
                  const OutboundTarget& target, std::vector<SocketAddress> addresses);
    void on_outcome(uint64_t agent, const std::string& agent_name, uint32_t request_id,
                    const std::string& destination, OutboundOutcome o);
    /// Answers a refusal, logs outbound-rejected (rate-limited per agent)
    /// and counts it. `holds_slot`: give back the slot precheck took.
    void refuse(uint64_t agent, const std::string& agent_name, uint32_t request_id,
                const std::string& destination, control::OutboundStatus status, int error,
                const std::string& resolved, const std::string& why, bool holds_slot);

    const config::RelayConfig& cfg_;
    io::Sharded<Shard>& shards_;
    Hooks hooks_;
    std::unique_ptr<NameResolver> resolver_;
    OutboundCounts counts_;
    std::unordered_map<uint64_t, Waiting> waiting_;  // by resolver request id
    uint64_t next_ = 1;
    unsigned next_worker_ = 0;
    log::LogLimiter reject_log_{5, std::chrono::milliseconds(1000)};
};

}  // namespace sp::relay
