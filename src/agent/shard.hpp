// SPDX-License-Identifier: Apache-2.0
// One worker's share of the data plane: the data channels it dials for the
// tokens the control thread hands it (dial, 40-byte hello, wait for the
// binding header, judge it), within each relay's channel budget. A bound
// channel goes to the same worker's BackendConnector: no hop to another
// thread between a channel's binding and its backend connect.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/backend_connect.hpp"
#include "agent/channel_policy.hpp"
#include "agent/health_checker.hpp"
#include "agent/link_id.hpp"
#include "agent/shard_host.hpp"
#include "base/addr.hpp"
#include "base/events.hpp"
#include "base/log_limiter.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "io/worker.hpp"
#include "obs/metrics.hpp"

namespace sp::agent {

/// Where a link's channels go, sent with each batch of tokens.
struct LinkRoute {
    LinkId id{};
    SocketAddress relay;     // the address the control channel reached
    std::string relay_name;  // RELAY_ADDR in events
    ChannelLimits limits;    // this shard's share
};

/// Worker thread only (reach it by posting to its worker), except the
/// constructor and destructor, which run on the control thread while the
/// worker does not run.
class Shard final {
public:
    Shard(unsigned index, ShardHost& host);
    ~Shard();
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    /// Replaces the services; channels already bound keep what they picked.
    /// Shard 0 also prepares the health checks for them.
    void set_services(io::Worker& w, std::shared_ptr<const ServiceTable> table);
    /// Shard 0: starts the checks prepared by set_services (posted after
    /// every shard's set_services). Other shards: no-op.
    void start_health_checks(io::Worker& w) {
        if (checker_) {
            checker_->start(w);
        }
    }
    /// A resolver answer (nullopt: the name did not resolve).
    void set_address(io::Worker& w, const std::string& host, std::optional<IpAddress> ip);
    /// The affinity memory for the client IPs this shard owns.
    [[nodiscard]] AffinityTables& affinity() noexcept { return affinity_; }
    /// The owner's answer for placement attempt `attempt` of this shard.
    void affinity_answer(io::Worker& w, uint64_t attempt, const balance::Choice& choice,
                         const std::string& group, const std::string& client) {
        connector_.affinity_answer(w, attempt, choice, group, client);
    }
    /// A shard found a backend refusing (a failed check too, on shard 0).
    void mark_down(uint64_t gen, const std::string& service, size_t index);
    /// The health checks took a backend down or brought it back.
    void set_backend_health(uint64_t gen, const std::string& service, size_t index, bool up) {
        connector_.set_backend_health(gen, service, index, up);
    }

    /// Dials one data channel per token to `route.relay`, within the link's
    /// budget; tokens over it are dropped (resource-limit, rate-limited).
    void dial(io::Worker& w, const LinkRoute& route, const std::vector<control::Token>& tokens);
    /// The link's control channel closed: its unbound channels die (the
    /// relay voided their tokens); bound ones and sessions run on.
    void drop_link(io::Worker& w, LinkId link);
    /// Drain: closes every channel not yet spliced; the health checks stop.
    void close_all(io::Worker& w);

    /// Channels dialled and not yet bound.
    [[nodiscard]] size_t channels() const noexcept { return channels_.size(); }

    // --- snapshots for the status socket and /metrics: copies, taken on
    // this worker by io::Sharded::map_reduce ---

    [[nodiscard]] std::vector<SessionRow> sessions(const io::Worker& w) const {
        return connector_.sessions(w);
    }
    [[nodiscard]] std::vector<BackendRow> backends() const { return connector_.backends(); }
    [[nodiscard]] SessionTotals totals(const io::Worker& w) const { return connector_.totals(w); }
    /// Channels connected to each link's relay and waiting for a client.
    [[nodiscard]] std::map<LinkId, size_t> idle_by_link() const;
    /// The shard's families of agent/metrics.hpp, idle channels included.
    [[nodiscard]] obs::MetricSet snapshot_metrics(const io::Worker& w) const;

    struct Channel;

private:
    struct Link {
        LinkRoute route;
        ChannelBudget budget;
    };

    void on_dialled(io::Worker& w, uint64_t id, int res);
    void on_readable(io::Worker& w, uint64_t id, int res);
    void read_binding(io::Worker& w, uint64_t id, Channel& c);
    /// Forgets a channel: cancels its wait, frees its budget slot, closes it.
    void drop(io::Worker& w, uint64_t id);
    /// A warning about a relay's channels, at most a few per relay and
    /// reason per window; the rest are counted into the next one.
    void limited_log(log::Ev event, const std::string& relay, std::string_view reason,
                     const std::string& detail, const control::Binding* b = nullptr);

    unsigned index_;
    AffinityTables affinity_;  // before connector_, which holds a reference
    BackendConnector connector_;
    std::unique_ptr<HealthChecker> checker_;  // shard 0 only: one checker per agent
    std::map<LinkId, Link> links_;
    std::unordered_map<uint64_t, std::unique_ptr<Channel>> channels_;
    uint64_t next_channel_ = 1;
    // A relay that sends garbage on every channel gets a few lines per
    // reason and a count, not a line per channel.
    log::LogLimiter log_limit_{5, std::chrono::seconds(10)};
};

}  // namespace sp::agent
