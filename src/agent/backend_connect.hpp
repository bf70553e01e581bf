// SPDX-License-Identifier: Apache-2.0
// Places a bound data channel on a backend, on the worker that read its
// binding header: picks a backend of the service (round robin on its own
// BackendSelector copy, or, with affinity_s, the choice of the client IP's
// owner shard), connects with retries over the service's backends, writes
// the PROXY header, and starts the splice session on the same ring.
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

#include "agent/affinity.hpp"
#include "agent/backend.hpp"
#include "agent/link_id.hpp"
#include "agent/session_log.hpp"
#include "agent/shard_host.hpp"
#include "base/addr.hpp"
#include "base/unique_fd.hpp"
#include "io/session_table.hpp"
#include "io/worker.hpp"
#include "obs/metrics.hpp"

namespace sp::agent {

/// Backend names as this worker last heard them from the resolver: absent
/// = not answered yet, nullopt = did not resolve.
using ResolvedNames = std::unordered_map<std::string, std::optional<IpAddress>>;

/// A data channel the relay bound to a client.
struct BoundChannel {
    LinkId link{};
    UniqueFd fd;       // client bytes follow the binding header on it
    SessionInfo info;  // backend_addr still empty
    SocketAddress listen;
};

/// A session this worker placed, as `sessions` lists it.
struct SessionRow {
    uint64_t id = 0;  // SESSION_ID
    std::string service;
    SocketAddress client;
    std::string backend;
    std::string relay;
    std::chrono::steady_clock::time_point start;
    uint64_t up_bytes = 0;  // so far
    uint64_t down_bytes = 0;
};

/// One backend of a service on this worker, as `services` lists it.
struct BackendRow {
    std::string service;
    size_t index = 0;  // in the service's backend list
    std::string address;
    bool healthy = true;        // not skipped after a failed connect, nor down by its checks
    const char* check = "off";  // health checks: "off", "up" or "down"
    uint64_t sessions = 0;
};

/// This worker's session counts and bytes.
struct SessionTotals {
    uint64_t open = 0;
    uint64_t started = 0;
    uint64_t up_bytes = 0;  // closed sessions plus open ones so far
    uint64_t down_bytes = 0;
};

/// Worker thread only, like its Shard.
class BackendConnector final {
public:
    /// `affinity`: the tables of shard `index` (this one), for the clients
    /// it owns.
    BackendConnector(ShardHost& host, unsigned index, AffinityTables& affinity);
    ~BackendConnector();
    BackendConnector(const BackendConnector&) = delete;
    BackendConnector& operator=(const BackendConnector&) = delete;

    /// Fresh selectors for a new configuration; attempts under way finish
    /// with the services they started with, or fail if theirs is gone.
    void set_services(std::shared_ptr<const ServiceTable> table);
    [[nodiscard]] bool knows(std::string_view service) const {
        return services_.find(service) != services_.end();
    }
    /// A resolver answer (nullopt: did not resolve); resumes the attempts
    /// waiting for `host`.
    void set_address(io::Worker& w, const std::string& host, std::optional<IpAddress> ip);
    /// The owner shard's choice for attempt `id` (see place()).
    void affinity_answer(io::Worker& w, uint64_t id, const balance::Choice& choice,
                         const std::string& group, const std::string& client);
    /// The resolver's answers so far (the health checker reads them).
    [[nodiscard]] const ResolvedNames& addresses() const noexcept { return addresses_; }
    /// Another shard found backend `index` of `service` refusing.
    void mark_down(uint64_t gen, const std::string& service, size_t index);
    /// The health checks took backend `index` of `service` down or back up.
    void set_backend_health(uint64_t gen, const std::string& service, size_t index, bool up);

    /// Takes the channel. Either a session starts on `w` (session-open,
    /// backend-failed for every backend that refused first), or no backend
    /// took it: backend-failed, BACKEND_FAILED to the relay, channel closed.
    void place(io::Worker& w, BoundChannel ch);
    /// Drain: abandons every attempt (their clients are closed by the relay).
    void close_all(io::Worker& w);
    [[nodiscard]] size_t attempts() const noexcept { return attempts_.size(); }

    // --- snapshots for the status socket and /metrics (copies) ---

    [[nodiscard]] std::vector<SessionRow> sessions(const io::Worker& w) const;
    /// Every backend of every service, in configuration order.
    [[nodiscard]] std::vector<BackendRow> backends() const;
    [[nodiscard]] SessionTotals totals(const io::Worker& w) const;
    /// The counters (metrics.hpp) with open sessions' bytes so far added.
    [[nodiscard]] obs::MetricSet snapshot_metrics(const io::Worker& w) const;

    struct Attempt;

private:
    struct Service {
        BackendSelector selector;
        config::ProxyProtocol proxy = config::ProxyProtocol::None;
        std::chrono::seconds affinity{0};
        std::string group;  // affinity group
    };
    /// Asks the client's owner shard for a backend host (a retry first
    /// releases the slot the failed try held).
    void ask_affinity(io::Worker& w, uint64_t id, Attempt& a, const Service& svc, bool retry);
    /// Runs fn on the owner of `client`'s affinity memory: here at once if
    /// this shard owns it, else by message.
    void at_owner(const std::string& client, UniqueFunction<void(AffinityTables&)> fn);
    /// A session (or attempt) that held an affinity slot is gone.
    void unpin(const std::string& group, const std::string& client);
    void connect(io::Worker& w, uint64_t id, Attempt& a);
    void on_connected(io::Worker& w, uint64_t id, int res);
    void attempt_failed(io::Worker& w, uint64_t id, Attempt& a, int err);
    /// No backend takes the session. `logged`: its reason is in the journal
    /// already (backend-failed lines are still written per failed backend).
    void give_up(io::Worker& w, uint64_t id, Attempt& a, int err, bool logged = false);
    void start(io::Worker& w, uint64_t id, Attempt& a);
    void forget(io::Worker& w, uint64_t id);
    void ended(io::SessionId sid, const std::string& service, const io::SessionEnd& end);

    /// A session that started here, until its close callback ran.
    struct Live {
        SessionInfo info;
        size_t backend = 0;  // index in its service's backend list
        io::SessionId sid;
    };
    struct Pin {  // an affinity slot a session holds at its owner shard
        std::string group;
        std::string client;
    };
    [[nodiscard]] static uint64_t key(io::SessionId sid) noexcept {
        return (uint64_t{sid.slot} << 16) | sid.gen;
    }

    ShardHost& host_;
    unsigned index_;
    AffinityTables& affinity_;
    std::shared_ptr<const ServiceTable> table_;
    std::map<std::string, Service, std::less<>> services_;
    ResolvedNames addresses_;
    std::unordered_map<std::string, std::vector<uint64_t>> resolving_;  // host -> attempts
    std::unordered_map<uint64_t, std::unique_ptr<Attempt>> attempts_;
    uint64_t next_ = 1;
    std::unordered_map<uint64_t, Live> live_;  // by key(SessionId)
    obs::MetricSet metrics_;                   // closed sessions' bytes, counters, histograms
    uint64_t started_ = 0;
    uint64_t closed_up_ = 0;
    uint64_t closed_down_ = 0;
};

}  // namespace sp::agent
