// SPDX-License-Identifier: Apache-2.0
#include "relay/listeners.hpp"

#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"
#include "io/net.hpp"

namespace sp::relay {

namespace {

constexpr int kBacklog = 1024;

/// The wire's services as Registry specs. A service with an unparsable
/// listen string or CIDR is not applied: each of its listen strings gets an
/// Invalid result instead.
struct Parsed {
    std::vector<ServiceSpec> specs;
    std::vector<control::ListenResult> invalid;
};

Parsed parse(const control::Config& cfg) {
    Parsed p;
    for (const auto& s : cfg.services) {
        ServiceSpec spec;
        spec.name = s.name;
        spec.max_sessions = s.max_sessions;
        spec.affinity_s = s.affinity_s;
        std::string bad;
        for (const auto& l : s.listen) {
            auto hp = HostPorts::parse(l, true);
            if (!hp || !hp->ip) {
                bad = fmt::format("invalid listen address \"{}\"", l);
                break;
            }
            spec.listen.push_back(*hp);
        }
        for (const auto* list : {&s.allow_clients, &s.deny_clients}) {
            for (const auto& text : *list) {
                auto cidr = Cidr::parse(text);
                if (!cidr) {
                    bad = cidr.error().message;
                    break;
                }
                (list == &s.allow_clients ? spec.allow_clients : spec.deny_clients)
                    .push_back(*cidr);
            }
        }
        if (!bad.empty()) {
            for (const auto& l : s.listen) {
                p.invalid.push_back({s.name, l, control::ListenStatus::Invalid, 0, bad});
            }
            continue;
        }
        p.specs.push_back(std::move(spec));
    }
    return p;
}

}  // namespace

Listeners::Listeners(io::Sharded<Shard>& shards, Registry::ListenPolicy policy)
    : shards_(shards), registry_(std::move(policy)) {}

control::ConfigResult Listeners::apply(uint64_t agent, const std::string& agent_name,
                                       const control::Config& cfg) {
    generations_[agent] = cfg.generation;
    applied_.insert_or_assign(agent, Applied{agent_name, cfg});
    Parsed parsed = parse(cfg);
    const ApplyOutcome out = registry_.apply(agent, parsed.specs);
    prune_orphans();
    std::map<std::string, int> bind_failed;  // service -> errno
    for (const auto& a : out.actions) {
        if (a.kind == ListenerAction::Kind::Close) {
            close(a.address);
        } else if (!bind_failed.contains(a.service)) {
            if (const int err = open(a.address, a.service); err != 0) {
                bind_failed[a.service] = err;
                log::event(log::Ev::BindFailed,
                           {{"SERVICE", a.service},
                            {"LISTEN_ADDR", a.address.to_string()},
                            {"AGENT", agent_name},
                            {"REASON", log::errno_reason(err)}},
                           fmt::format("cannot listen on {} for {}: {}", a.address.to_string(),
                                       a.service, std::strerror(err)));
            }
        }
    }
    // A service is served whole or not at all: roll back what did bind.
    for (const auto& [service, err] : bind_failed) {
        for (const auto& action : registry_.drop_service(service)) {
            close(action.address);
        }
    }
    broadcast();
    announce(agent_name, "config");

    control::ConfigResult result;
    result.generation = cfg.generation;
    size_t ok = 0;
    for (const auto& r : out.results) {
        control::ListenResult lr{r.service, r.listen, r.status, 0, r.message};
        if (const auto bf = bind_failed.find(r.service); bf != bind_failed.end()) {
            lr.status = control::ListenStatus::BindFailed;
            lr.error = bf->second;
            lr.message = std::strerror(bf->second);
        }
        if (lr.status == control::ListenStatus::Ok) {
            ++ok;
        } else {
            log::event(log::Ev::ConfigRejected,
                       {{"AGENT", agent_name},
                        {"SERVICE", lr.service},
                        {"LISTEN_ADDR", lr.listen},
                        {"REASON", std::string(control::to_string(lr.status))}},
                       fmt::format("agent \"{}\" service \"{}\" listen {}: {}", agent_name,
                                   lr.service, lr.listen, lr.message));
        }
        result.results.push_back(std::move(lr));
    }
    for (auto& r : parsed.invalid) {
        log::event(
            log::Ev::ConfigRejected,
            {{"AGENT", agent_name},
             {"SERVICE", r.service},
             {"LISTEN_ADDR", r.listen},
             {"REASON", "invalid"}},
            fmt::format("agent \"{}\" service \"{}\": {}", agent_name, r.service, r.message));
        result.results.push_back(std::move(r));
    }
    log::event(log::Ev::ConfigApplied, {{"AGENT", agent_name}},
               fmt::format("agent \"{}\" config generation {}: {} of {} listen entries active",
                           agent_name, cfg.generation, ok, result.results.size()));
    if (const size_t left_out = control::fit_to_frame(result); left_out > 0) {
        log::event(log::Ev::ConfigRejected, {{"AGENT", agent_name}, {"REASON", "too-large"}},
                   fmt::format("agent \"{}\" config generation {}: the answer leaves out {} "
                               "results to fit one frame; the events above name every failure",
                               agent_name, cfg.generation, left_out));
    }
    return result;
}

void Listeners::reapply() {
    // A copy: apply() stores into applied_ as it goes.
    const auto all = applied_;
    for (const auto& [agent, a] : all) {
        (void)apply(agent, a.agent_name, a.config);
    }
    // Orphans have no CONFIG to re-apply; one no longer permitted closes
    // now, not when its grace ends.
    const auto closes = registry_.close_disallowed_orphans();
    if (closes.empty()) {
        return;
    }
    std::string agent_name;
    for (const auto& a : closes) {
        close(a.address);
        if (const auto o = orphans_.find(a.service); o != orphans_.end()) {
            agent_name = o->second.agent_name;
        }
    }
    prune_orphans();
    broadcast();
    announce(agent_name, "not-allowed");
}

void Listeners::remove_agent(uint64_t agent, const std::string& agent_name, bool stopping,
                             bool may_hold) {
    generations_.erase(agent);
    applied_.erase(agent);
    const bool had = count() > 0;
    const bool hold = may_hold && !stopping && grace_.count() > 0;
    for (const auto& action : registry_.remove_agent(agent, hold)) {
        close(action.address);
    }
    if (hold) {
        const auto deadline = std::chrono::steady_clock::now() + grace_;
        for (const auto& name : registry_.orphans()) {
            orphans_.try_emplace(name, Orphan{deadline, agent_name});
        }
    }
    broadcast();
    announce(agent_name, stopping ? "stopping" : "no-agent");
    if (had && count() == 0 && !stopping) {
        log::event(log::Ev::ListenersSuspended, {{"AGENT", agent_name}},
                   "no agent left: public listeners closed until an agent connects");
    }
}

void Listeners::prune_orphans() {
    const auto now = registry_.orphans();
    std::erase_if(orphans_, [&](const auto& kv) {
        return std::find(now.begin(), now.end(), kv.first) == now.end();
    });
}

void Listeners::tick(std::chrono::steady_clock::time_point now) {
    prune_orphans();
    std::string last_agent;
    bool closed = false;
    for (auto it = orphans_.begin(); it != orphans_.end();) {
        if (it->second.deadline > now) {
            ++it;
            continue;
        }
        for (const auto& action : registry_.close_orphan(it->first)) {
            close(action.address);
        }
        last_agent = it->second.agent_name;
        closed = true;
        it = orphans_.erase(it);
    }
    if (!closed) {
        return;
    }
    // Their waiting clients are refused (no-agent) as the service goes.
    broadcast();
    announce(last_agent, "no-agent");
    if (count() == 0) {
        log::event(log::Ev::ListenersSuspended, {{"AGENT", last_agent}},
                   "no agent came back within listener_grace_ms: public listeners closed until "
                   "an agent connects");
    }
}

int Listeners::open(const SocketAddress& addr, const std::string& service) {
    // Bound here, on the control thread, so a failure is known before any
    // worker starts accepting and the whole service can be rolled back.
    std::vector<UniqueFd> fds;
    for (size_t i = 0; i < shards_.size(); ++i) {
        auto fd = io::listen_tcp(addr, true, kBacklog);
        if (!fd) {
            return fd.error().code != 0 ? fd.error().code : EINVAL;
        }
        fds.push_back(std::move(*fd));
    }
    const uint64_t key = next_key_++;
    keys_[addr.to_string()] = key;
    for (unsigned i = 0; i < shards_.size(); ++i) {
        shards_.invoke_on(
            i, [key, service, addr, f = std::move(fds[i])](Shard& s, io::Worker& w) mutable {
                s.add_listener(w, key, std::move(f), service, addr);
            });
    }
    return 0;
}

void Listeners::close(const SocketAddress& addr) {
    const auto it = keys_.find(addr.to_string());
    if (it == keys_.end()) {
        return;
    }
    const uint64_t key = it->second;
    keys_.erase(it);
    shards_.invoke_on_all([key](Shard& s, io::Worker& w) { s.remove_listener(w, key); });
}

// One event per listen entry, as the agent wrote it (a range of ten ports
// is one listener-open), derived from what is held before and after a
// change: so a service rolled back after a failed bind, whose ports were
// open for a moment only, is never announced at all.
void Listeners::announce(const std::string& agent_name, std::string_view closed_reason) {
    std::set<std::string> services;
    for (const auto& [addr, service] : registry_.listeners()) {
        services.insert(service);
    }
    std::map<std::string, Entry> now;
    for (const auto& service : services) {
        const ServiceSpec* spec = registry_.service(service);
        if (spec == nullptr) {
            continue;
        }
        for (const auto& entry : spec->listen) {
            if (!entry.ip) {
                continue;
            }
            const std::string head =
                SocketAddress(*entry.ip, static_cast<uint16_t>(entry.ports.first)).to_string();
            if (keys_.contains(head)) {
                now[head] = Entry{service, entry.to_string()};
            }
        }
    }
    for (const auto& [head, e] : announced_) {
        const auto it = now.find(head);
        if (it != now.end() && it->second.service == e.service && it->second.text == e.text) {
            continue;
        }
        log::event(
            log::Ev::ListenerClosed,
            {{"SERVICE", e.service},
             {"LISTEN_ADDR", head},
             {"AGENT", agent_name},
             {"REASON", std::string(closed_reason)}},
            fmt::format("stopped listening on {} for {} ({})", e.text, e.service, closed_reason));
    }
    for (const auto& [head, e] : now) {
        const auto it = announced_.find(head);
        if (it != announced_.end() && it->second.service == e.service &&
            it->second.text == e.text) {
            continue;
        }
        log::event(
            log::Ev::ListenerOpen,
            {{"SERVICE", e.service}, {"LISTEN_ADDR", head}, {"AGENT", agent_name}},
            fmt::format("listening on {} for {} (agent \"{}\")", e.text, e.service, agent_name));
    }
    announced_ = std::move(now);
}

void Listeners::broadcast() {
    std::set<std::string> now;
    for (const auto& [addr, name] : registry_.listeners()) {
        now.insert(name);
    }
    for (const auto& name : now) {
        const ServiceSpec* spec = registry_.service(name);
        auto policy = std::make_shared<ServicePolicy>();
        policy->name = name;
        policy->allow_clients = spec->allow_clients;
        policy->deny_clients = spec->deny_clients;
        policy->max_sessions = spec->max_sessions;
        policy->affinity_s = spec->affinity_s;
        policy->agents = registry_.agents_of(name);
        policy->held = policy->agents.empty();  // an orphan in its grace
        std::shared_ptr<const ServicePolicy> shared = std::move(policy);
        shards_.invoke_on_all([shared](Shard& s, io::Worker& w) { s.set_service(w, shared); });
    }
    for (const auto& gone : broadcast_names_) {
        if (!now.contains(gone)) {
            shards_.invoke_on_all([gone](Shard& s, io::Worker& w) { s.remove_service(w, gone); });
        }
    }
    broadcast_names_ = std::move(now);
}

}  // namespace sp::relay
