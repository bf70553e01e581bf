// SPDX-License-Identifier: Apache-2.0
#include "relay/listeners.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "admin/protocol.hpp"
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
                             bool may_hold, std::chrono::milliseconds at_least) {
    generations_.erase(agent);
    applied_.erase(agent);
    const bool had = count() > 0;
    const auto grace = std::max(grace_, at_least);
    const bool hold = may_hold && !stopping && grace.count() > 0;
    for (const auto& action : registry_.remove_agent(agent, hold)) {
        close(action.address);
    }
    if (hold) {
        const auto deadline = std::chrono::steady_clock::now() + grace;
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

int Listeners::open(const SocketAddress& addr, const std::string& service,
                    std::vector<UniqueFd> inherited) {
    // Bound here, on the control thread, so a failure is known before any
    // worker starts accepting and the whole service can be rolled back.
    std::vector<UniqueFd> fds = std::move(inherited);
    while (fds.size() < shards_.size()) {
        auto fd = io::listen_tcp(addr, true, kBacklog);
        if (!fd) {
            return fd.error().code != 0 ? fd.error().code : EINVAL;
        }
        fds.push_back(std::move(*fd));
    }
    auto dups = daemon::dup_sockets(fds, fmt::format("listener {}", addr.to_string()));
    if (!dups) {
        return dups.error().code != 0 ? dups.error().code : EINVAL;
    }
    // Sockets beyond one per worker (handed over by a predecessor that had
    // more) are still in the kernel's SO_REUSEPORT group and get clients:
    // they are served too, each under a key of its own.
    std::vector<uint64_t> keys{next_key_++};
    for (size_t i = 0; i < fds.size(); ++i) {
        if (i >= shards_.size()) {
            keys.push_back(next_key_++);
        }
        const uint64_t key = keys.back();
        shards_.invoke_on(
            static_cast<unsigned>(i % shards_.size()),
            [key, service, addr, f = std::move(fds[i])](Shard& s, io::Worker& w) mutable {
                s.add_listener(w, key, std::move(f), service, addr);
            });
    }
    keys_[addr.to_string()] = std::move(keys);
    dups_[addr.to_string()] = std::move(*dups);
    return 0;
}

void Listeners::close(const SocketAddress& addr) {
    const auto it = keys_.find(addr.to_string());
    if (it == keys_.end()) {
        return;
    }
    const std::vector<uint64_t> keys = it->second;
    keys_.erase(it);
    dups_.erase(addr.to_string());
    shards_.invoke_on_all([keys](Shard& s, io::Worker& w) {
        for (const uint64_t key : keys) {
            s.remove_listener(w, key);
        }
    });
}

namespace {

// A service's spec as the "service" entry's meta carries it (JSON).
std::string encode_spec(const ServiceSpec& spec, const std::string& agent_name) {
    admin::Json j;
    j["name"] = spec.name;
    j["agent"] = agent_name;
    j["listen"] = admin::Json::array();
    for (const auto& l : spec.listen) {
        j["listen"].push_back(l.to_string());
    }
    j["allow_clients"] = admin::Json::array();
    for (const auto& c : spec.allow_clients) {
        j["allow_clients"].push_back(c.to_string());
    }
    j["deny_clients"] = admin::Json::array();
    for (const auto& c : spec.deny_clients) {
        j["deny_clients"].push_back(c.to_string());
    }
    j["max_sessions"] = spec.max_sessions;
    j["affinity_s"] = spec.affinity_s;
    return j.dump();
}

std::optional<ServiceSpec> decode_spec(const std::string& text, std::string& ret_agent) {
    const admin::Json j = admin::Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        return std::nullopt;
    }
    ServiceSpec spec;
    try {
        spec.name = j.at("name").get<std::string>();
        ret_agent = j.value("agent", std::string());
        for (const auto& l : j.at("listen")) {
            auto hp = HostPorts::parse(l.get<std::string>(), true);
            if (!hp || !hp->ip) {
                return std::nullopt;
            }
            spec.listen.push_back(*hp);
        }
        for (const auto* key : {"allow_clients", "deny_clients"}) {
            for (const auto& c : j.at(key)) {
                auto cidr = Cidr::parse(c.get<std::string>());
                if (!cidr) {
                    return std::nullopt;
                }
                (std::string_view(key) == "allow_clients" ? spec.allow_clients : spec.deny_clients)
                    .push_back(*cidr);
            }
        }
        spec.max_sessions = j.at("max_sessions").get<uint32_t>();
        spec.affinity_s = j.at("affinity_s").get<uint32_t>();
    } catch (const admin::Json::exception&) {
        return std::nullopt;  // written by our own predecessor: a version skew at most
    }
    return spec;
}

}  // namespace

Result<std::vector<daemon::HandedSocket>> Listeners::hand_over() const {
    std::vector<daemon::HandedSocket> out;
    std::set<std::string> services;
    for (const auto& [addr, service] : registry_.listeners()) {
        services.insert(service);
        const auto d = dups_.find(addr);
        if (d == dups_.end()) {
            continue;
        }
        auto fds = daemon::dup_sockets(d->second, fmt::format("listener {}", addr));
        if (!fds) {
            return Unexpected(fds.error());
        }
        out.push_back({"listener", addr, service, std::move(*fds)});
    }
    for (const auto& name : services) {
        const ServiceSpec* spec = registry_.service(name);
        if (spec == nullptr) {
            continue;
        }
        std::string agent_name;
        for (const auto& [agent, a] : applied_) {
            const auto& ids = registry_.agents_of(name);
            if (std::find(ids.begin(), ids.end(), agent) != ids.end()) {
                agent_name = a.agent_name;
                break;
            }
        }
        if (const auto o = orphans_.find(name); agent_name.empty() && o != orphans_.end()) {
            agent_name = o->second.agent_name;
        }
        out.push_back({"service", name, encode_spec(*spec, agent_name), {}});
    }
    return out;
}

void Listeners::adopt(const std::vector<daemon::HandedSocket>& services,
                      std::vector<daemon::HandedSocket> sockets, std::chrono::milliseconds hold) {
    std::map<std::string, std::vector<UniqueFd>> by_addr;
    for (auto& s : sockets) {
        by_addr[s.address] = std::move(s.fds);
    }
    std::string last_agent;
    const auto deadline = std::chrono::steady_clock::now() + hold;
    for (const auto& s : services) {
        std::string agent_name;
        const auto spec = decode_spec(s.meta, agent_name);
        if (!spec) {
            continue;
        }
        const auto opens = registry_.adopt_orphan(*spec);
        bool ok = !opens.empty();
        for (const auto& a : opens) {
            auto fds = by_addr.find(a.address.to_string());
            const int err =
                open(a.address, a.service,
                     fds != by_addr.end() ? std::move(fds->second) : std::vector<UniqueFd>{});
            if (err != 0) {
                log::event(log::Ev::BindFailed,
                           {{"SERVICE", a.service},
                            {"LISTEN_ADDR", a.address.to_string()},
                            {"AGENT", agent_name},
                            {"REASON", log::errno_reason(err)}},
                           fmt::format("cannot listen on {} for {}: {}", a.address.to_string(),
                                       a.service, std::strerror(err)));
                ok = false;
                break;
            }
        }
        if (!ok) {
            for (const auto& action : registry_.drop_service(spec->name)) {
                close(action.address);
            }
            continue;
        }
        orphans_[spec->name] = Orphan{deadline, agent_name};
        last_agent = agent_name;
    }
    // Sockets of services not adopted close here (by_addr goes out of
    // scope); their kernel queues go with the old process's copies.
    broadcast();
    announce(last_agent, "not-allowed");
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
