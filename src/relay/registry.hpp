// SPDX-License-Identifier: Apache-2.0
// Which agents serve which services, and so which public listeners the relay
// must hold. Pure bookkeeping, no sockets: the control plane feeds it agents'
// config pushes and departures and carries out the listener actions it returns.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/addr.hpp"
#include "control/frame.hpp"

namespace sp::relay {

/// One service as an agent declared it, already parsed.
struct ServiceSpec {
    std::string name;
    std::vector<HostPorts> listen;  // literal IPs, ranges allowed
    std::vector<Cidr> allow_clients;
    std::vector<Cidr> deny_clients;
    uint32_t max_sessions = 0;
    uint32_t affinity_s = 0;
};

// The wire's enum, so a result goes to the agent without translation.
using control::ListenStatus;

struct ListenResult {
    std::string service;
    std::string listen;  // as the agent wrote it
    ListenStatus status = ListenStatus::Ok;
    int error = 0;  // errno for BindFailed
    std::string message;
};

struct ListenerAction {
    enum class Kind { Open, Close };
    Kind kind = Kind::Open;
    SocketAddress address;
    std::string service;
};

struct ApplyOutcome {
    std::vector<ListenResult> results;    // one per listen entry the agent sent
    std::vector<ListenerAction> actions;  // closes first, then opens
    std::vector<std::string> joined;      // services this agent now serves anew
    std::vector<std::string> left;        // services it no longer serves
};

class Registry final {
public:
    /// Whether the DMZ admin's allow_listen permits this entry.
    using ListenPolicy = std::function<bool(const HostPorts&)>;

    explicit Registry(ListenPolicy policy) : policy_(std::move(policy)) {}

    /// Replaces everything `agent` serves with `services`. A service whose
    /// name is already served by another agent joins that pool if its listen
    /// set is the same, else every entry of it is a Conflict; a listen entry
    /// overlapping another service's (same port, same IP or a wildcard of the
    /// same family) is a Conflict; entries outside allow_listen are
    /// NotAllowed. Rejected services are not served by this agent. Services
    /// unchanged since the last push produce no action.
    [[nodiscard]] ApplyOutcome apply(uint64_t agent, const std::vector<ServiceSpec>& services);

    /// Stops serving `name` for every agent (a listener of it failed to
    /// bind); returns the Close actions for its other listeners.
    [[nodiscard]] std::vector<ListenerAction> drop_service(const std::string& name);

    /// Forgets `agent`; returns the Close actions of services left with no
    /// agent. With `hold`, such services keep their listeners instead, as
    /// orphans (no agent, listeners held): the caller closes them with
    /// close_orphan() when its grace ends, unless an agent pushes the same
    /// service first (apply() joins it). An orphan yields to any pushed
    /// service whose listen entries overlap it: it is closed then.
    [[nodiscard]] std::vector<ListenerAction> remove_agent(uint64_t agent, bool hold = false);
    /// Closes an orphan; nothing when `name` is not one.
    [[nodiscard]] std::vector<ListenerAction> close_orphan(const std::string& name);
    /// Binary upgrade: holds `spec` as an orphan (no agent yet) on the
    /// listeners the old process handed over. Returns its Open actions, or
    /// nothing when allow_listen does not permit an entry, an entry
    /// conflicts with one held already, or the name is taken.
    [[nodiscard]] std::vector<ListenerAction> adopt_orphan(const ServiceSpec& spec);
    /// Services held with no agent.
    [[nodiscard]] std::vector<std::string> orphans() const;
    /// Closes every orphan with an entry the ListenPolicy no longer permits
    /// (a reload narrowed allow_listen during its grace).
    [[nodiscard]] std::vector<ListenerAction> close_disallowed_orphans();

    /// The spec of a served service (the first agent's), or nullptr.
    [[nodiscard]] const ServiceSpec* service(const std::string& name) const;
    /// Agents serving `name`, in the order they joined.
    [[nodiscard]] std::vector<uint64_t> agents_of(const std::string& name) const;
    /// Services `agent` serves.
    [[nodiscard]] std::vector<std::string> services_of(uint64_t agent) const;
    [[nodiscard]] size_t service_count() const noexcept { return services_.size(); }
    /// Every public address held now, with its service.
    [[nodiscard]] const std::map<std::string, std::string>& listeners() const noexcept {
        return listeners_;
    }

private:
    struct Served {
        ServiceSpec spec;
        std::vector<uint64_t> agents;
    };

    [[nodiscard]] std::optional<std::string> conflict_for(const ServiceSpec& spec,
                                                          const HostPorts& entry) const;
    void leave(uint64_t agent, const std::string& name, std::vector<ListenerAction>& closes,
               bool hold = false);
    void close_service(std::map<std::string, Served>::iterator it,
                       std::vector<ListenerAction>& closes);
    /// Closes every orphan for which pred(name, spec) holds.
    template <class Pred>
    void close_orphans_if(Pred&& pred, std::vector<ListenerAction>& closes);

    ListenPolicy policy_;
    std::map<std::string, Served> services_;
    std::map<std::string, std::string> listeners_;  // "ip:port" -> service
};

/// Every single-port address a listen entry expands to.
[[nodiscard]] std::vector<SocketAddress> expand(const HostPorts& entry);

/// True when two listen entries would compete for the same socket.
[[nodiscard]] bool overlaps(const HostPorts& a, const HostPorts& b);

}  // namespace sp::relay
