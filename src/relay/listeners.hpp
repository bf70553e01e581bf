// SPDX-License-Identifier: Apache-2.0
// The relay's public listener set: turns agents' CONFIGs into Registry
// actions, carries those out as SO_REUSEPORT groups (one socket per worker,
// so the kernel spreads clients and no accept crosses threads), and keeps
// every worker's copy of the service policies current. Control thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "daemon/upgrade.hpp"
#include "io/sharded.hpp"
#include "relay/registry.hpp"
#include "relay/shard.hpp"

namespace sp::relay {

class Listeners final {
public:
    /// `shards` is borrowed; `policy` says what allow_listen permits.
    Listeners(io::Sharded<Shard>& shards, Registry::ListenPolicy policy);

    /// Replaces what `agent` serves with `cfg`: parses the wire form, opens
    /// and closes listeners (a service whose listener fails to bind is
    /// dropped whole, for every agent), updates the workers' policies, logs
    /// listener-open/closed, bind-failed and config-applied/rejected, and
    /// returns the CONFIG_RESULT (one entry per listen string).
    [[nodiscard]] control::ConfigResult apply(uint64_t agent, const std::string& agent_name,
                                              const control::Config& cfg);

    /// Re-applies every agent's last CONFIG under the ListenPolicy as it is
    /// now: after a reload narrowed allow_listen, the listeners it no longer
    /// permits close (config-rejected REASON=not-allowed, listener-closed).
    /// No CONFIG_RESULT goes out (the protocol answers CONFIGs only); an
    /// agent hears of it with its next CONFIG.
    void reapply();

    /// Forgets `agent` (it left Ready): services nobody else serves close
    /// (listener-closed REASON=no-agent, or stopping when `stopping`).
    /// Logs listeners-suspended when that closed the last listener and
    /// `stopping` is false. With `may_hold` (its connection was lost, not
    /// refused by the admin) and a grace set, they stay open instead for
    /// the grace and their clients wait (Registry orphans): an agent back in
    /// time takes them over, else tick() closes them as above.
    /// `at_least`: hold for that long even with no grace configured (the
    /// agent was replaced by its own newer connection).
    void remove_agent(uint64_t agent, const std::string& agent_name, bool stopping,
                      bool may_hold = false,
                      std::chrono::milliseconds at_least = std::chrono::milliseconds(0));
    /// listener_grace_ms; 0 closes at once.
    void set_grace(std::chrono::milliseconds grace) { grace_ = grace; }
    /// About once a second: closes orphans whose grace is over.
    void tick(std::chrono::steady_clock::time_point now);

    /// Binary upgrade, old process: one "service" entry per service held
    /// (its spec in `meta`) and one "listener" entry per public address
    /// with duplicates of its sockets (the workers keep accepting on theirs).
    [[nodiscard]] Result<std::vector<daemon::HandedSocket>> hand_over() const;
    /// Binary upgrade, new process: holds every handed-over service as an
    /// orphan for `hold` on the handed-over sockets (an address with none
    /// is bound afresh), so clients wait for the agents to reconnect
    /// instead of being refused. A service the configuration no longer
    /// permits is not adopted: its sockets close.
    void adopt(const std::vector<daemon::HandedSocket>& services,
               std::vector<daemon::HandedSocket> sockets, std::chrono::milliseconds hold);

    /// Agents serving `service`, in join order.
    [[nodiscard]] std::vector<uint64_t> agents_of(const std::string& service) const {
        return registry_.agents_of(service);
    }
    /// Public addresses held now.
    [[nodiscard]] size_t count() const noexcept { return registry_.listeners().size(); }
    /// Every public address held now ("ip:port") with its service.
    [[nodiscard]] const std::map<std::string, std::string>& addresses() const noexcept {
        return registry_.listeners();
    }
    /// The generation of the last CONFIG applied for `agent`; nullopt
    /// before its first.
    [[nodiscard]] std::optional<uint32_t> generation(uint64_t agent) const {
        const auto it = generations_.find(agent);
        return it == generations_.end() ? std::nullopt : std::optional<uint32_t>(it->second);
    }

private:
    /// Returns 0 or a positive errno (the wire's ListenResult.error).
    /// `inherited`: sockets a predecessor handed over for `addr`, used
    /// before any is bound.
    [[nodiscard]] int open(const SocketAddress& addr, const std::string& service,
                           std::vector<UniqueFd> inherited = {});
    void close(const SocketAddress& addr);
    void broadcast();
    /// Logs listener-closed (with `closed_reason`) for each listen entry
    /// announced before and no longer held, then listener-open for each
    /// held entry not announced yet; AGENT is `agent_name`.
    void announce(const std::string& agent_name, std::string_view closed_reason);

    struct Entry {
        std::string service;
        std::string text;  // the listen entry, "127.0.0.1:30000-30009"
    };

    io::Sharded<Shard>& shards_;
    Registry registry_;
    std::set<std::string> broadcast_names_;
    // "ip:port" -> keys the workers know it by: one, unless a predecessor
    // with more workers handed over more sockets than we have workers.
    std::map<std::string, std::vector<uint64_t>> keys_;
    // "ip:port" -> duplicates of the workers' sockets, for a binary upgrade.
    std::map<std::string, std::vector<UniqueFd>> dups_;
    std::map<std::string, Entry> announced_;    // first "ip:port" of an entry -> the entry
    std::map<uint64_t, uint32_t> generations_;  // agent -> last CONFIG generation applied
    struct Applied {
        std::string agent_name;
        control::Config config;
    };
    std::map<uint64_t, Applied> applied_;  // each Ready agent's last CONFIG, for reapply()
    struct Orphan {
        std::chrono::steady_clock::time_point deadline;
        std::string agent_name;  // the last agent that served it, for events
    };
    std::map<std::string, Orphan> orphans_;  // service -> grace
    std::chrono::milliseconds grace_{0};
    /// Forgets graces of services an agent took over, or that are gone.
    void prune_orphans();
    uint64_t next_key_ = 1;
};

}  // namespace sp::relay
