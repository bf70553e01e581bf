// SPDX-License-Identifier: Apache-2.0
// One worker's share of the data plane: the data channels it dials for the
// tokens the control thread hands it, and every step of a channel's life
// on that worker's ring - dial, hello, binding header, backend connect with
// retries, PROXY header, start_session - with no hop to another thread
// between a channel's binding and its backend connect.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/backend.hpp"
#include "agent/channel_policy.hpp"
#include "agent/link_id.hpp"
#include "base/addr.hpp"
#include "base/unique_fd.hpp"
#include "config/agent_config.hpp"
#include "control/frame.hpp"
#include "io/worker.hpp"

namespace sp::agent {

/// What a shard asks of the rest of the agent. Every method may be called
/// from any worker thread and must not block: implementations post.
class ShardHost {
public:
    /// Look `host` up; the answer arrives as Shard::set_address on every shard.
    virtual void resolve(const std::string& host) = 0;
    /// Backend `index` of `service` (services generation `gen`) refused a
    /// connect: every shard should skip it for a while.
    virtual void backend_down(uint64_t gen, const std::string& service, size_t index) = 0;
    /// Tell relay `link` that no backend took its session (BACKEND_FAILED).
    virtual void backend_failed(LinkId link, control::BackendFailed msg) = 0;
    /// A session started or ended (the drain waits for the count to reach 0).
    virtual void session_count(int delta) = 0;

protected:
    ~ShardHost() = default;
};

/// The services as the shards need them, with the generation that failure
/// marks are checked against. Shared read-only between shards.
struct ServiceTable {
    uint64_t generation = 0;
    std::vector<config::Service> services;
};

/// Where a link's channels go, sent with each batch of tokens.
struct LinkRoute {
    LinkId id{};
    SocketAddress relay;     // the address the control channel reached
    std::string relay_name;  // RELAY_ADDR in events
    ChannelLimits limits;    // this shard's share
};

/// Worker thread only (reach it with io::Sharded::invoke_on), except the
/// constructor and destructor, which run on the control thread while the
/// worker does not run.
class Shard final {
public:
    Shard(unsigned index, ShardHost& host);
    ~Shard();
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    /// Replaces the services; channels already bound keep what they picked.
    void set_services(std::shared_ptr<const ServiceTable> table);
    /// A resolver answer (nullopt: the name did not resolve). Resumes the
    /// channels waiting for it.
    void set_address(io::Worker& w, const std::string& host, std::optional<IpAddress> ip);
    /// Another shard found a backend down.
    void mark_down(uint64_t gen, const std::string& service, size_t index);

    /// Dials one data channel per token to `route.relay`, within the link's
    /// budget; tokens over it are dropped (logged, rate-limited).
    void dial(io::Worker& w, const LinkRoute& route, std::vector<control::Token> tokens);
    /// The link's control channel closed: its unbound channels die (the
    /// relay voided their tokens); sessions and channels already bound run on.
    void drop_link(io::Worker& w, LinkId link);
    /// Drain: closes every channel not yet spliced.
    void close_all(io::Worker& w);

    [[nodiscard]] size_t channels() const noexcept { return channels_.size(); }

    struct Channel;

private:
    struct Link {
        LinkRoute route;
        ChannelBudget budget;
    };
    struct Service {
        BackendSelector selector;
        config::ProxyProtocol proxy = config::ProxyProtocol::None;
    };

    void on_dialled(io::Worker& w, uint64_t id, int res);
    void on_readable(io::Worker& w, uint64_t id, int res);
    void read_binding(io::Worker& w, uint64_t id, Channel& c);
    void bind(io::Worker& w, uint64_t id, Channel& c, BindingVerdict v);
    void connect_backend(io::Worker& w, uint64_t id, Channel& c);
    void on_backend(io::Worker& w, uint64_t id, int res);
    void backend_attempt_failed(io::Worker& w, uint64_t id, Channel& c, int err);
    void session_failed(io::Worker& w, uint64_t id, Channel& c, int err);
    void start_session(io::Worker& w, uint64_t id, Channel& c);
    /// Forgets a channel that carries no session: cancels its wait, frees
    /// its budget slot if it still holds one, closes its fds.
    void drop(io::Worker& w, uint64_t id);
    /// A warning about a relay's channels, at most kLogBurst per relay and
    /// reason per window; the rest are counted into the next one.
    void limited_log(std::string_view event, const std::string& relay, std::string_view reason,
                     const std::string& detail, const control::Binding* b = nullptr);

    unsigned index_;
    ShardHost& host_;
    std::shared_ptr<const ServiceTable> table_;
    std::map<std::string, Service, std::less<>> services_;
    std::unordered_map<std::string, std::optional<IpAddress>> addresses_;
    std::unordered_map<std::string, std::vector<uint64_t>> resolving_;  // host -> channels
    std::map<LinkId, Link> links_;
    std::unordered_map<uint64_t, std::unique_ptr<Channel>> channels_;
    uint64_t next_channel_ = 1;
    // Refusal lines per relay and reason: a relay that sends garbage on
    // every channel gets a few lines and a count, not a flood.
    struct Limiter {
        std::chrono::steady_clock::time_point window{};
        uint32_t sent = 0;
        uint64_t held = 0;
    };
    std::map<std::string, Limiter> log_limit_;
};

}  // namespace sp::agent
