// SPDX-License-Identifier: Apache-2.0
// The relay's side of the operator interface: turns relay state into the
// answers of its status socket commands (agents, listeners, sessions,
// close, drain, resume, and the relay's members of status) and into its
// metrics. Per-worker state comes from the shards by io::Sharded::map_reduce
// (copies made on each worker, never a lock); agents and listeners are the
// control thread's own. Documents: src/admin/docs/admin-protocol.md,
// section 7. Control thread only.
#pragma once

#include <cstdint>
#include <optional>

#include "admin/args.hpp"
#include "admin/protocol.hpp"
#include "base/unique_function.hpp"
#include "daemon/commands.hpp"
#include "daemon/shell.hpp"
#include "io/sharded.hpp"
#include "obs/metrics.hpp"
#include "relay/agents.hpp"
#include "relay/listeners.hpp"
#include "relay/shard.hpp"
#include "relay/shard_report.hpp"

namespace sp::relay {

class AdminCommands final {
public:
    /// All borrowed: they must outlive the shell's run() (the handlers
    /// installed on shell.admin() name them).
    AdminCommands(daemon::Shell& shell, io::Sharded<Shard>& shards, const Agents& agents,
                  const Listeners& listeners);
    AdminCommands(const AdminCommands&) = delete;
    AdminCommands& operator=(const AdminCommands&) = delete;

    /// Registers the commands, the status members and the metric sources on
    /// shell.admin(). Call once, before the shell runs.
    void install();

    /// True between `drain` and `resume`.
    [[nodiscard]] bool draining() const noexcept { return draining_; }

    /// `sessions`' arguments: "service" (a name) and "client" (a CIDR; a
    /// bare address is a /32 or /128), both optional; bad-args otherwise.
    [[nodiscard]] static admin::Outcome<SessionFilter> session_filter(const admin::Args& args);
    /// `close`'s argument "id": the SESSION_ID, 1 to 16 hex digits.
    [[nodiscard]] static admin::Outcome<uint64_t> session_id(const admin::Args& args);

private:
    /// Every shard's report, summed, handed to `done` on this thread.
    void gather(UniqueFunction<void(ShardReport)> done);
    void status(UniqueFunction<void(admin::Json)> done);
    void agents(daemon::Reply reply);
    void listeners(daemon::Reply reply);
    void sessions(const SessionFilter& filter, daemon::Reply reply);
    void close(uint64_t id, daemon::Reply reply);
    /// Answers once every shard has applied it, so a client that connects
    /// after the answer is treated by the new setting on any worker.
    void set_draining(bool on, daemon::Reply reply);
    void metrics(UniqueFunction<void(obs::MetricSet)> done);
    void control_metrics(obs::MetricSet& set) const;

    daemon::Shell& shell_;
    io::Sharded<Shard>& shards_;
    const Agents& agents_;
    const Listeners& listeners_;
    bool draining_ = false;
};

/// The round-trip time the kernel measured on a TCP socket (TCP_INFO's
/// smoothed RTT), or nullopt when it cannot say (not TCP, no sample yet).
[[nodiscard]] std::optional<double> tcp_rtt_ms(int fd) noexcept;

}  // namespace sp::relay
