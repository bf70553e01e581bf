// SPDX-License-Identifier: Apache-2.0
#include "agent/app.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "agent/link_policy.hpp"
#include "agent/wire_config.hpp"
#include "base/events.hpp"
#include "base/notify.hpp"
#include "config.h"
#include "daemon/reload.hpp"

namespace sp::agent {

using log::Ev;
namespace f = log::f;
using namespace std::chrono_literals;

namespace {

constexpr auto kDrainTimeout = 30s;  // the agent has no drain_timeout_s key
constexpr auto kResolveEvery = 60s;  // backend names are looked up again this often

uint64_t random_seed() {
    uint64_t s = 0;
    if (::getrandom(&s, sizeof s, 0) != static_cast<ssize_t>(sizeof s)) {
        s = static_cast<uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ULL;
    }
    return s;
}

// What must be equal for a reload to keep a link (and its sessions' relay).
bool same_entry(const config::RelayEntry& a, const config::RelayEntry& b) {
    return a.address.to_string() == b.address.to_string() && a.key == b.key &&
           a.certificate == b.certificate && a.private_key == b.private_key &&
           a.relay_ca == b.relay_ca && a.standby == b.standby;
}

}  // namespace

App::App(Private /*key*/, config::AgentConfig cfg) : cfg_(std::move(cfg)) {}

// Order matters: no resolver answer may arrive once we start tearing down,
// links cancel their timers on the poller, and the workers (which run shard
// code and session callbacks into this object) stop before the shards go.
App::~App() {
    resolver_.reset();
    links_.clear();
    shell_.reset();
}

Result<std::unique_ptr<App>> App::create(config::AgentConfig cfg) {
    auto a = std::make_unique<App>(Private{}, std::move(cfg));
    if (auto r = a->setup(); !r) {
        return Unexpected(r.error());
    }
    return a;
}

Result<void> App::setup() {
    auto shell =
        daemon::Shell::create(cfg_.agent.threads, daemon::io_data_path(cfg_.agent.data_path));
    if (!shell) {
        return Unexpected(shell.error());
    }
    shell_ = std::move(*shell);
    shell_->set_hooks({[this] { reload(); }, [this] { begin_drain(); }, [this] { tick(); },
                       [this] { return static_cast<uint64_t>(std::max<int64_t>(0, sessions_)); },
                       // The shell adds the status socket and metrics
                       // endpoint to the forward proxy's listeners.
                       [this]() -> Result<std::vector<daemon::HandedSocket>> {
                           std::vector<daemon::HandedSocket> out;
                           if (auto r = proxy_->hand_over(out); !r) {
                               return Unexpected(r.error());
                           }
                           return out;
                       },
                       [this] { retire(); }});
    shards_.start(shell_->workers(), [this](unsigned i) {
        return std::make_unique<Shard>(i, static_cast<ShardHost&>(*this));
    });
    publish_services();
    proxy_ = std::make_unique<ForwardProxy>(*shell_, static_cast<OutboundLinks&>(*this),
                                            [this](int delta) { sessions_ += delta; });
    if (auto r = proxy_->start(cfg_.outbound, shell_->inheritance()); !r) {
        return Unexpected(r.error());
    }
    register_admin(*shell_, shards_, static_cast<AgentView&>(*this));
    shell_->admin().set_reload([this] { return apply_reload(); });
    // Opened once: a reload keeps the socket and the endpoint it started with.
    if (auto r = shell_->enable_admin(cfg_.agent.status_socket, cfg_.agent.metrics_listen); !r) {
        return Unexpected(r.error());
    }
    // Answers come on the resolver's thread: hand them to the control thread.
    auto resolver = Resolver::create(
        [this](Resolver::Answer a) { shell_->post([this, a = std::move(a)] { on_answer(a); }); });
    if (!resolver) {
        return Unexpected(resolver.error());
    }
    resolver_ = std::move(*resolver);
    for (const auto& e : cfg_.relays) {
        auto l = make_link(e);
        if (!l) {
            return Unexpected(l.error());
        }
        links_.emplace((*l)->id(), std::move(*l));
    }
    return {};
}

Result<std::unique_ptr<RelayLink>> App::make_link(const config::RelayEntry& e) {
    auto creds = load_credentials(e);
    if (!creds) {
        return Unexpected(creds.error());
    }
    const LinkId id{next_link_++};
    return std::make_unique<RelayLink>(id, e, std::move(*creds), shell_->poller(),
                                       static_cast<LinkHost&>(*this), make_hello(cfg_.agent),
                                       make_config(cfg_.services, generation_), random_seed());
}

void App::publish_services() {
    auto table = std::make_shared<ServiceTable>();
    table->generation = ++services_generation_;
    table->services = cfg_.services;
    std::shared_ptr<const ServiceTable> t = std::move(table);
    // Before the workers run, posts wait in their inboxes: still in order.
    shards_.invoke_on_all([t](Shard& s, io::Worker& w) { s.set_services(w, t); });
    // Posted after every shard's new table, so no verdict of the checks
    // reaches a shard before its table does.
    if (shards_.size() > 0) {
        shards_.invoke_on(0, [](Shard& s, io::Worker& w) { s.start_health_checks(w); });
    }
}

// Backend names are resolved ahead of the first session and refreshed, so a
// session normally finds its address in its shard's copy.
void App::resolve_backends() {
    last_resolve_ = Poller::Clock::now();
    std::set<std::string> names;
    for (const auto& s : cfg_.services) {
        for (const auto& b : s.backend) {
            if (!b.ip) {
                names.insert(b.host);
            }
        }
    }
    for (const auto& n : names) {
        resolver_->request(n);
    }
}

void App::on_answer(const Resolver::Answer& a) {
    for (auto& [id, l] : links_) {
        l->on_resolved(a.host, a.ip);
    }
    shards_.invoke_on_all(
        [host = a.host, ip = a.ip](Shard& s, io::Worker& w) { s.set_address(w, host, ip); });
}

// Standby relays follow the primaries (link_policy). A link's phase change
// re-enters here through phase_changed(): the flag turns that into one more
// round instead of recursion over a map being walked.
void App::apply_policy() {
    if (in_policy_) {
        policy_again_ = true;
        return;
    }
    in_policy_ = true;
    do {
        policy_again_ = false;
        std::vector<LinkView> views;
        std::vector<RelayLink*> order;
        for (auto& [id, l] : links_) {
            views.push_back({l->entry().standby, l->phase()});
            order.push_back(l.get());
        }
        const auto want = wanted_links(views, stopping_);
        for (size_t i = 0; i < order.size(); ++i) {
            if (retiring_ && !stopping_) {
                // Up links serve on until the successor replaces them; a
                // link that went down does not come back.
                if (order[i]->phase() != LinkPhase::Ready && order[i]->phase() != LinkPhase::Idle) {
                    order[i]->stop(control::StopReason::Shutdown);
                }
                continue;
            }
            if (want[i] == Want::Run) {
                order[i]->start();
            } else if (order[i]->phase() != LinkPhase::Idle) {
                order[i]->stop(want[i] == Want::StopShutdown ? control::StopReason::Shutdown
                                                             : control::StopReason::Standby);
            }
        }
    } while (policy_again_);
    in_policy_ = false;
}

void App::resolve(const std::string& host) {
    resolver_->request(host);
}

// One message per shard and batch, not per token; a batch is split so that
// pooled channels (and the sessions they will carry) spread over workers.
void App::dial_channels(LinkId link, const SocketAddress& relay,
                        std::vector<control::Token> tokens) {
    const auto it = links_.find(link);
    const size_t n = shards_.size();
    if (it == links_.end() || n == 0 || stopping_) {
        return;
    }
    const size_t parts = std::min(n, tokens.size());
    const size_t per = (tokens.size() + parts - 1) / parts;
    for (size_t p = 0; p < parts; ++p) {
        const size_t from = p * per;
        const size_t to = std::min(tokens.size(), from + per);
        if (from >= to) {
            break;
        }
        std::vector<control::Token> part(tokens.begin() + static_cast<std::ptrdiff_t>(from),
                                         tokens.begin() + static_cast<std::ptrdiff_t>(to));
        const auto k = static_cast<unsigned>(next_shard_++ % n);
        LinkRoute route{link, relay, it->second->name(),
                        link_limits(cfg_.agent.pool, static_cast<unsigned>(n))};
        shards_.invoke_on(k, [route = std::move(route), part = std::move(part)](
                                 Shard& s, io::Worker& w) mutable { s.dial(w, route, part); });
    }
}

void App::link_closed(LinkId link) {
    shards_.invoke_on_all([link](Shard& s, io::Worker& w) { s.drop_link(w, link); });
    proxy_->link_down(link);  // its callers waiting for an answer hear "no relay"
}

std::vector<OutboundLinks::Relay> App::ready_relays() const {
    std::vector<Relay> out;
    for (const auto& [id, l] : links_) {
        if (l->phase() == LinkPhase::Ready && l->address()) {
            out.push_back(Relay{id, *l->address(), l->name()});
        }
    }
    return out;
}

bool App::send_outbound(LinkId link, const control::OutboundRequest& req) {
    const auto it = links_.find(link);
    return it != links_.end() && it->second->send_outbound(req);
}

void App::phase_changed(LinkId /*link*/) {
    apply_policy();
}

void App::backend_down(uint64_t gen, const std::string& service, size_t index) {
    shards_.invoke_on_all(
        [gen, service, index](Shard& s, io::Worker&) { s.mark_down(gen, service, index); });
}

void App::backend_health(uint64_t gen, const std::string& service, size_t index, bool up) {
    shards_.invoke_on_all([gen, service, index, up](Shard& s, io::Worker&) {
        s.set_backend_health(gen, service, index, up);
    });
}

void App::backend_failed(LinkId link, control::BackendFailed msg) {
    shell_->post([this, link, msg = std::move(msg)] {
        // The link may have been removed by a reload since: nothing to tell.
        if (const auto it = links_.find(link); it != links_.end()) {
            it->second->send_backend_failed(msg);
        }
    });
}

void App::session_count(int delta) {
    sessions_ += delta;
}

void App::on_shard(unsigned shard, UniqueFunction<void(Shard&, io::Worker&)> fn) {
    shards_.invoke_on(shard, std::move(fn));
}

void App::tick() {
    const auto now = Poller::Clock::now();
    for (auto& [id, l] : links_) {
        l->tick(now);
    }
    if (retiring_ && !stopping_) {
        const bool all_down = std::all_of(links_.begin(), links_.end(), [](const auto& kv) {
            return kv.second->phase() == LinkPhase::Idle;
        });
        if (all_down || now >= retire_deadline_) {
            begin_drain();
        }
    }
    if (now - last_resolve_ >= kResolveEvery) {
        resolve_backends();
    }
    const auto up = std::count_if(links_.begin(), links_.end(), [](const auto& kv) {
        return kv.second->phase() == LinkPhase::Ready;
    });
    shell_->status(fmt::format("{} of {} relays up, {} sessions{}", up, links_.size(),
                               std::max<int64_t>(0, sessions_), draining_ ? ", draining" : ""));
}

std::vector<std::pair<LinkId, LinkStatus>> App::links() const {
    std::vector<std::pair<LinkId, LinkStatus>> out;
    out.reserve(links_.size());
    for (const auto& [id, l] : links_) {
        out.emplace_back(id, l->status());
    }
    return out;
}

void App::set_draining(bool draining) {
    if (draining == draining_) {
        return;
    }
    draining_ = draining;
    shell_->admin().set_draining(draining);
    for (auto& [id, l] : links_) {
        l->set_draining(draining);
    }
    log::event(draining ? Ev::AgentDrain : Ev::AgentResume, {{f::kAgent, cfg_.agent.name}},
               draining ? "draining: relays send this agent new sessions only of services no "
                          "other agent serves; established sessions go on"
                        : "resumed: relays send this agent new sessions again");
}

void App::reload() {
    // A refused file was logged (reload-failed) and changed nothing.
    (void)apply_reload();
}

Result<void> App::apply_reload() {
    notify::reloading();
    auto fresh = config::load_agent_config(cfg_.path);
    if (!fresh) {
        log::event(Ev::ReloadFailed, {{f::kReason, fresh.error().describe()}},
                   fmt::format("reload failed, keeping the running configuration: {}",
                               fresh.error().describe()));
        notify::ready();
        return Unexpected(fresh.error());
    }
    // Keys only a restart changes keep their running values, said by name.
    std::vector<daemon::KeptKey> restart_only;
    if (fresh->agent.threads != cfg_.agent.threads) {
        restart_only.push_back(
            {"agent.threads", "the worker threads and their rings are created at start"});
    }
    // The status socket and the metrics endpoint move now; one that cannot
    // be opened at its new place keeps the old one, said by name.
    const auto move_error = daemon::move_admin(
        shell_->admin(), "agent", cfg_.agent.status_socket, fresh->agent.status_socket,
        cfg_.agent.metrics_listen, fresh->agent.metrics_listen);
    fresh->agent.threads = cfg_.agent.threads;
    if (auto r = proxy_->reload(fresh->outbound, restart_only); !r) {
        log::event(Ev::ReloadFailed, {{f::kReason, r.error().describe()}},
                   fmt::format("reload: [outbound] keeps its running users and clients: {}",
                               r.error().describe()));
    }
    // data_path applies to sessions that start from now on.
    if (fresh->agent.data_path != cfg_.agent.data_path) {
        shell_->set_data_path(daemon::io_data_path(fresh->agent.data_path));
    }
    // HELLO carries the name and the pool: the relays learn a change only
    // from a new connection.
    const bool hello_same =
        fresh->agent.name == cfg_.agent.name && fresh->agent.pool == cfg_.agent.pool;
    cfg_ = std::move(*fresh);
    ++generation_;
    // A link survives when its entry and key material are unchanged; the
    // others are stopped and replaced. Ids are never reused, so a session
    // of a removed link can only find "gone", never another relay.
    std::map<LinkId, std::unique_ptr<RelayLink>> next;
    for (const auto& e : cfg_.relays) {
        auto creds = load_credentials(e);
        if (!creds) {
            log::event(Ev::ReloadFailed, {{f::kReason, creds.error().describe()}},
                       fmt::format("reload: relay {}: {}; it stays disconnected until fixed",
                                   e.address.to_string(), creds.error().describe()));
            continue;
        }
        const auto kept = std::find_if(links_.begin(), links_.end(), [&](const auto& kv) {
            return hello_same && same_entry(kv.second->entry(), e) &&
                   kv.second->fingerprint() == creds->fingerprint;
        });
        if (kept != links_.end()) {
            kept->second->new_config(make_config(cfg_.services, generation_));
            next.emplace(kept->first, std::move(kept->second));
            links_.erase(kept);
            continue;
        }
        const LinkId id{next_link_++};
        auto link = std::make_unique<RelayLink>(
            id, e, std::move(*creds), shell_->poller(), static_cast<LinkHost&>(*this),
            make_hello(cfg_.agent), make_config(cfg_.services, generation_), random_seed());
        if (draining_) {
            link->set_draining(true);  // said after its HELLO_ACK
        }
        next.emplace(id, std::move(link));
    }
    // Swap first: stopping a removed link re-enters apply_policy, which must
    // see only the links that stay.
    auto removed = std::exchange(links_, std::move(next));
    for (auto& [id, l] : removed) {
        l->stop(control::StopReason::Reload);  // GOODBYE(reload) if up
        link_closed(id);                       // its idle channels die, whatever its state
    }
    removed.clear();
    publish_services();
    resolve_backends();
    apply_policy();
    const auto kept_error = daemon::report_kept_keys(restart_only);
    log::event(Ev::Reload, {},
               fmt::format("agent configuration reloaded: {} relays, {} services, generation {}",
                           links_.size(), cfg_.services.size(), generation_));
    notify::ready();
    if (kept_error) {
        return Unexpected(*kept_error);
    }
    if (move_error) {
        return Unexpected(*move_error);
    }
    return {};
}

void App::retire() {
    retiring_ = true;
    proxy_->stop_accepting();  // the successor accepts on the same sockets
    // The successor dials every relay as soon as it runs; 30 s covers a
    // relay that is slow to answer it.
    retire_deadline_ = Poller::Clock::now() + 30s;
    apply_policy();
}

void App::begin_drain() {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    log::event(Ev::Stopping, {},
               fmt::format("stopping: draining {} sessions for up to {} s",
                           std::max<int64_t>(0, sessions_), kDrainTimeout.count()));
    apply_policy();  // every link says GOODBYE(shutdown)
    proxy_->close_all();
    shards_.invoke_on_all([](Shard& s, io::Worker& w) { s.close_all(w); });
    shell_->begin_drain(kDrainTimeout);
}

int App::run() {
    log::event(Ev::Started, {{f::kAgent, cfg_.agent.name}},
               fmt::format("sallyport-agent {} \"{}\" started with {} workers, {} relays, {} "
                           "services",
                           SP_VERSION, cfg_.agent.name, shell_->workers().size(), links_.size(),
                           cfg_.services.size()));
    resolve_backends();
    apply_policy();
    const bool forced = shell_->run();
    log::event(Ev::Stopping, {},
               forced ? "drain timeout reached: remaining sessions closed; exiting"
                      : "all sessions drained; exiting");
    return 0;
}

}  // namespace sp::agent
