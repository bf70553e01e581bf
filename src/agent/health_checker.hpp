// SPDX-License-Identifier: Apache-2.0
// Active TCP health checks of the backends, on one worker (shard 0): every
// health_check_interval_ms a non-blocking connect to each distinct backend address
// (HOST:PORT of a single-port backend entry; port ranges are not checked)
// of each service with checks on, fed
// to a HealthState per address. A transition is logged (backend-down,
// backend-up) and sent to every shard through ShardHost::backend_health, so
// each worker's BackendSelector skips or readmits the backend.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/backend_connect.hpp"
#include "agent/health_state.hpp"
#include "agent/shard_host.hpp"
#include "base/addr.hpp"
#include "base/unique_fd.hpp"
#include "io/worker.hpp"

namespace sp::agent {

/// Worker thread only (the one of shard 0), like its Shard; constructed and
/// destroyed on the control thread while the worker does not run.
class HealthChecker final {
public:
    /// `addresses`: the worker's resolved backend names (BackendConnector's),
    /// borrowed. A name not resolved yet is not checked (no result either
    /// way) until its answer arrives; one that did not resolve fails its
    /// checks (EHOSTUNREACH), as a session to it would.
    HealthChecker(ShardHost& host, const ResolvedNames& addresses);
    ~HealthChecker();
    HealthChecker(const HealthChecker&) = delete;
    HealthChecker& operator=(const HealthChecker&) = delete;

    /// Stops the checks under way and prepares those of `table`; they run
    /// from start(). An address that a service keeps, with the same rise
    /// and fall, keeps its state. No-op after stop().
    void set_services(io::Worker& w, std::shared_ptr<const ServiceTable> table);
    /// Starts the checks of the last set_services(), and announces again
    /// the addresses that stayed down (the shards' new selectors start all
    /// up). Call it once every shard has its set_services() queued: a
    /// verdict posted to a shard before its new table would be dropped as
    /// another generation's.
    void start(io::Worker& w);
    /// A session's connect to backend `index` of `service` failed on some
    /// shard: counts as a failed check (ignored for services without checks
    /// or another generation).
    void passive_failure(uint64_t gen, const std::string& service, size_t index);
    /// Drain or shutdown: cancels every timer and connect; no check runs
    /// afterwards.
    void stop(io::Worker& w);

    /// Addresses checked now (for tests and status).
    [[nodiscard]] size_t targets() const noexcept { return targets_.size(); }

private:
    using Clock = std::chrono::steady_clock;
    struct Target {
        std::string service;
        std::string host;
        uint16_t port = 0;
        std::string address;          // BACKEND_ADDR, as HOST:PORT
        std::vector<size_t> indexes;  // backend entries with this address
        HealthState state;
        std::chrono::milliseconds interval{};
        std::chrono::milliseconds timeout{};
        uint32_t rise = 0;
        uint32_t fall = 0;
        uint64_t timer = 0;  // the next check
        uint64_t wait = 0;   // wait_fd on the connect in flight
        UniqueFd fd;
        Clock::time_point started{};
    };

    void schedule(io::Worker& w, size_t i, std::chrono::milliseconds delay);
    void run_check(io::Worker& w, size_t i);
    void on_connected(io::Worker& w, size_t i, int res);
    /// A check ended (`err` 0: connected, else a positive errno); the next
    /// one starts an interval after this one did.
    void finish(io::Worker& w, size_t i, int err);
    void apply(Target& t, HealthEvent e, int err);
    void announce(const Target& t, bool up);
    void cancel_all(io::Worker& w);

    ShardHost& host_;
    std::shared_ptr<const ServiceTable> table_;
    std::vector<Target> targets_;
    const ResolvedNames& addresses_;
    bool started_ = false;  // for this table
    bool stopped_ = false;
};

}  // namespace sp::agent
