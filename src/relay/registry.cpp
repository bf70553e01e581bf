// SPDX-License-Identifier: Apache-2.0
#include "relay/registry.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace sp::relay {

namespace {

bool same_listen_set(const ServiceSpec& a, const ServiceSpec& b) {
    if (a.listen.size() != b.listen.size()) {
        return false;
    }
    for (size_t i = 0; i < a.listen.size(); ++i) {
        if (!(a.listen[i].ip == b.listen[i].ip) || !(a.listen[i].ports == b.listen[i].ports)) {
            return false;
        }
    }
    return true;
}

}  // namespace

std::vector<SocketAddress> expand(const HostPorts& entry) {
    std::vector<SocketAddress> out;
    if (!entry.ip) {
        return out;
    }
    for (uint32_t p = entry.ports.first; p <= entry.ports.last; ++p) {
        out.emplace_back(*entry.ip, static_cast<uint16_t>(p));
    }
    return out;
}

bool overlaps(const HostPorts& a, const HostPorts& b) {
    if (!a.ip || !b.ip || !a.ports.overlaps(b.ports)) {
        return false;
    }
    // IPv6 sockets are bound with IPV6_V6ONLY, so the families never collide.
    if (a.ip->unmapped().family() != b.ip->unmapped().family()) {
        return false;
    }
    return *a.ip == *b.ip || a.ip->is_unspecified() || b.ip->is_unspecified();
}

std::optional<std::string> Registry::conflict_for(const ServiceSpec& spec,
                                                  const HostPorts& entry) const {
    for (const auto& [name, served] : services_) {
        if (name == spec.name) {
            continue;
        }
        for (const auto& other : served.spec.listen) {
            if (overlaps(entry, other)) {
                return fmt::format("{} overlaps {} of service \"{}\"", entry.to_string(),
                                   other.to_string(), name);
            }
        }
    }
    return std::nullopt;
}

void Registry::leave(uint64_t agent, const std::string& name, std::vector<ListenerAction>& closes,
                     bool hold) {
    const auto it = services_.find(name);
    if (it == services_.end()) {
        return;
    }
    auto& agents = it->second.agents;
    agents.erase(std::remove(agents.begin(), agents.end(), agent), agents.end());
    if (!agents.empty() || hold) {
        return;
    }
    close_service(it, closes);
}

void Registry::close_service(std::map<std::string, Served>::iterator it,
                             std::vector<ListenerAction>& closes) {
    for (const auto& entry : it->second.spec.listen) {
        for (const auto& addr : expand(entry)) {
            closes.push_back({ListenerAction::Kind::Close, addr, it->first});
            listeners_.erase(addr.to_string());
        }
    }
    services_.erase(it);
}

std::vector<ListenerAction> Registry::close_orphan(const std::string& name) {
    std::vector<ListenerAction> closes;
    const auto it = services_.find(name);
    if (it != services_.end() && it->second.agents.empty()) {
        close_service(it, closes);
    }
    return closes;
}

template <class Pred>
void Registry::close_orphans_if(Pred&& pred, std::vector<ListenerAction>& closes) {
    for (auto it = services_.begin(); it != services_.end();) {
        const auto next = std::next(it);
        if (it->second.agents.empty() && pred(it->first, it->second.spec)) {
            close_service(it, closes);
        }
        it = next;
    }
}

std::vector<ListenerAction> Registry::close_disallowed_orphans() {
    std::vector<ListenerAction> closes;
    close_orphans_if(
        [&](const std::string&, const ServiceSpec& spec) {
            return std::any_of(spec.listen.begin(), spec.listen.end(),
                               [&](const HostPorts& e) { return !policy_(e); });
        },
        closes);
    return closes;
}

std::vector<ListenerAction> Registry::adopt_orphan(const ServiceSpec& spec) {
    std::vector<ListenerAction> opens;
    if (services_.contains(spec.name)) {
        return opens;
    }
    for (const auto& entry : spec.listen) {
        if (!entry.ip || !policy_(entry) || conflict_for(spec, entry)) {
            return opens;
        }
    }
    for (const auto& entry : spec.listen) {
        for (const auto& addr : expand(entry)) {
            opens.push_back({ListenerAction::Kind::Open, addr, spec.name});
            listeners_[addr.to_string()] = spec.name;
        }
    }
    services_.emplace(spec.name, Served{spec, {}});
    return opens;
}

std::vector<std::string> Registry::orphans() const {
    std::vector<std::string> out;
    for (const auto& [name, served] : services_) {
        if (served.agents.empty()) {
            out.push_back(name);
        }
    }
    return out;
}

ApplyOutcome Registry::apply(uint64_t agent, const std::vector<ServiceSpec>& services) {
    ApplyOutcome out;
    std::vector<ListenerAction> opens;
    std::vector<ListenerAction> closes;
    std::set<std::string> kept;

    // Leave first, so a service the same agent moves to another port does
    // not conflict with its own old listeners.
    for (const auto& name : services_of(agent)) {
        const auto want = std::find_if(services.begin(), services.end(),
                                       [&](const ServiceSpec& s) { return s.name == name; });
        // Kept only while allow_listen still permits every entry: a reload
        // may have narrowed it (Listeners::reapply).
        if (want != services.end() && same_listen_set(*want, services_.at(name).spec) &&
            std::all_of(want->listen.begin(), want->listen.end(),
                        [&](const HostPorts& e) { return !e.ip || policy_(e); })) {
            // The listeners stay; the client rules and limits are the ones
            // just pushed, or a tightened deny_clients would never apply.
            services_.at(name).spec = *want;
            kept.insert(name);
            continue;
        }
        leave(agent, name, closes);
        if (want == services.end()) {
            out.left.push_back(name);
        }
    }

    // An orphan (held for its grace, no agent) yields to what is pushed
    // now: kept for the same service with the same listen set (it joins
    // below), closed when it is the same service changed, or another one
    // that overlaps it.
    for (const auto& spec : services) {
        close_orphans_if(
            [&](const std::string& name, const ServiceSpec& held) {
                if (name == spec.name) {
                    return !same_listen_set(spec, held);
                }
                return std::any_of(spec.listen.begin(), spec.listen.end(), [&](const HostPorts& e) {
                    return std::any_of(held.listen.begin(), held.listen.end(),
                                       [&](const HostPorts& h) { return overlaps(e, h); });
                });
            },
            closes);
    }

    std::set<std::string> seen;
    for (const auto& spec : services) {
        const auto result_for = [&](const HostPorts& entry, ListenStatus st, std::string msg) {
            out.results.push_back({spec.name, entry.to_string(), st, 0, std::move(msg)});
        };
        if (kept.contains(spec.name)) {
            for (const auto& entry : spec.listen) {
                result_for(entry, ListenStatus::Ok, "unchanged");
            }
            continue;
        }
        // All or nothing: half a service (an FTP control port without its
        // passive range) would fail in ways that are hard to diagnose.
        std::vector<ListenResult> checks;
        bool rejected = !seen.insert(spec.name).second || spec.listen.empty();
        const auto existing = services_.find(spec.name);
        for (const auto& entry : spec.listen) {
            ListenResult r{spec.name, entry.to_string(), ListenStatus::Ok, 0, {}};
            if (rejected) {
                r.status = ListenStatus::Invalid;
                r.message = "duplicate or empty service";
            } else if (!entry.ip) {
                r.status = ListenStatus::Invalid;
                r.message = "listen address must be a literal IP";
            } else if (!policy_(entry)) {
                r.status = ListenStatus::NotAllowed;
                r.message = "outside the relay's allow_listen";
            } else if (existing != services_.end() &&
                       !same_listen_set(spec, existing->second.spec)) {
                r.status = ListenStatus::Conflict;
                r.message = fmt::format(
                    "service \"{}\" is served by another agent with other "
                    "listen addresses",
                    spec.name);
            } else if (auto why = conflict_for(spec, entry); why) {
                r.status = ListenStatus::Conflict;
                r.message = std::move(*why);
            }
            checks.push_back(std::move(r));
        }
        const auto failed = std::find_if(checks.begin(), checks.end(), [](const ListenResult& r) {
            return r.status != ListenStatus::Ok;
        });
        if (rejected || failed != checks.end()) {
            for (auto& r : checks) {
                if (r.status == ListenStatus::Ok && failed != checks.end()) {
                    r.status = failed->status;
                    r.message = fmt::format("not opened: {} was refused", failed->listen);
                }
                out.results.push_back(std::move(r));
            }
            continue;
        }
        out.joined.push_back(spec.name);
        if (existing != services_.end()) {
            existing->second.agents.push_back(agent);
            existing->second.spec = spec;  // the last pushed rules apply, as on a reload
            for (auto& r : checks) {
                r.message = "joined";
                out.results.push_back(std::move(r));
            }
            continue;
        }
        services_.emplace(spec.name, Served{spec, {agent}});
        for (const auto& entry : spec.listen) {
            for (const auto& addr : expand(entry)) {
                listeners_[addr.to_string()] = spec.name;
                opens.push_back({ListenerAction::Kind::Open, addr, spec.name});
            }
        }
        for (auto& r : checks) {
            out.results.push_back(std::move(r));
        }
    }
    out.actions = std::move(closes);
    out.actions.insert(out.actions.end(), std::make_move_iterator(opens.begin()),
                       std::make_move_iterator(opens.end()));
    return out;
}

std::vector<ListenerAction> Registry::drop_service(const std::string& name) {
    std::vector<ListenerAction> closes;
    const auto it = services_.find(name);
    if (it == services_.end()) {
        return closes;
    }
    const auto agents = it->second.agents;
    for (const auto a : agents) {
        leave(a, name, closes);
    }
    if (agents.empty()) {
        close_service(it, closes);  // an orphan
    }
    return closes;
}

std::vector<ListenerAction> Registry::remove_agent(uint64_t agent, bool hold) {
    std::vector<ListenerAction> closes;
    for (const auto& name : services_of(agent)) {
        leave(agent, name, closes, hold);
    }
    return closes;
}

const ServiceSpec* Registry::service(const std::string& name) const {
    const auto it = services_.find(name);
    return it == services_.end() ? nullptr : &it->second.spec;
}

std::vector<uint64_t> Registry::agents_of(const std::string& name) const {
    const auto it = services_.find(name);
    return it == services_.end() ? std::vector<uint64_t>{} : it->second.agents;
}

std::vector<std::string> Registry::services_of(uint64_t agent) const {
    std::vector<std::string> out;
    for (const auto& [name, served] : services_) {
        if (std::find(served.agents.begin(), served.agents.end(), agent) != served.agents.end()) {
            out.push_back(name);
        }
    }
    return out;
}

}  // namespace sp::relay
