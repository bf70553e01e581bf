// SPDX-License-Identifier: Apache-2.0
#include "relay/app.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"
#include "base/notify.hpp"
#include "config.h"
#include "config/keys.hpp"
#include "daemon/reload.hpp"
#include "io/net.hpp"

namespace sp::relay {

using log::Level;

namespace {

constexpr int kBacklog = 1024;

// sallyport.toml(5): setting certificate (with private_key and agent_ca)
// selects certificate mode; keys is then not used.
bool psk_mode(const config::RelayConfig& cfg) {
    return cfg.auth.certificate.empty() && cfg.shared_key_mode();
}

// Each session holds two descriptors (client and data channel); idle
// channels, waiting clients, listeners and the control port need more.
constexpr uint64_t kFdsPerSession = 2;
constexpr uint64_t kFdReserve = 1024;

// issue 16: a max_sessions the open-file limit cannot back fails later, one
// EMFILE at a time; say so once, at start and on reload.
void warn_fd_budget(const config::RelayConfig& cfg) {
    rlimit rl{};
    if (cfg.limits.max_sessions == 0 || ::getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
        rl.rlim_cur == RLIM_INFINITY) {
        return;
    }
    const uint64_t need = uint64_t{cfg.limits.max_sessions} * kFdsPerSession + kFdReserve;
    if (need <= rl.rlim_cur) {
        return;
    }
    log::event(
        log::Ev::ResourceLimit, {{"REASON", "RLIMIT_NOFILE"}},
        fmt::format("max_sessions = {} needs about {} open files, but the limit is {}: "
                    "sessions beyond about {} will fail; raise LimitNOFILE= or lower "
                    "max_sessions",
                    cfg.limits.max_sessions, need, rl.rlim_cur,
                    rl.rlim_cur > kFdReserve ? (rl.rlim_cur - kFdReserve) / kFdsPerSession : 0));
}

Result<uint64_t> random_u64() {
    uint64_t v = 0;
    if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
        return errno_error("getrandom");
    }
    return v;
}

}  // namespace

App::App(const Private& /*key*/, config::RelayConfig cfg) : cfg_(std::move(cfg)) {}

App::~App() {
    // The agent sessions hold the poller's callbacks: they go before the
    // daemon that owns it. The workers use the shards and admission: the
    // daemon (which joins them) goes before those.
    outbound_.reset();
    agents_.reset();
    shell_.reset();
}

Result<std::unique_ptr<App>> App::create(config::RelayConfig cfg) {
    auto app = std::make_unique<App>(Private{}, std::move(cfg));
    if (auto s = app->setup(); !s) {
        return Unexpected(s.error());
    }
    return app;
}

Result<void> App::load_keys(const std::string& path) {
    auto keys = config::load_keys(path, false);
    if (!keys) {
        return Unexpected(keys.error());
    }
    keys_.clear();
    for (auto& k : *keys) {
        keys_[k.id] = std::move(k.secret);
    }
    return {};
}

Result<control::TlsContext> App::make_tls(const config::RelayConfig& cfg) {
    if (!psk_mode(cfg)) {
        agent_ca_bytes_ = config::file_bytes(cfg.auth.agent_ca);
        return control::TlsContext::cert_server(cfg.auth.certificate, cfg.auth.private_key,
                                                cfg.auth.agent_ca);
    }
    if (keys_.empty()) {
        if (auto k = load_keys(cfg.auth.keys); !k) {
            return Unexpected(k.error());
        }
    }
    // Looked up per handshake on this thread, so a reload that swaps keys_
    // applies to the next agent without touching connected ones.
    return control::TlsContext::psk_server(
        [this](std::string_view id) -> std::optional<std::vector<uint8_t>> {
            const auto it = keys_.find(std::string(id));
            if (it == keys_.end()) {
                return std::nullopt;
            }
            return it->second;
        });
}

std::shared_ptr<const AgentRules> App::agent_rules() const {
    return std::make_shared<const AgentRules>(
        AgentRules{cfg_.auth.allow_agents, cfg_.auth.deny_agents,
                   std::chrono::milliseconds(cfg_.limits.handshake_timeout_ms)});
}

Result<void> App::listen_control() {
    for (const auto& addr : cfg_.relay.control_listen) {
        if (auto r = open_control(addr); !r) {
            return r;
        }
    }
    return {};
}

Result<void> App::open_control(const SocketAddress& addr) {
    // One SO_REUSEPORT socket per worker and address: every worker accepts
    // agents' connections itself, so data channels never touch this thread.
    // After a binary upgrade the predecessor's sockets come first (their
    // queues hold agents already connecting); more are bound as needed.
    std::vector<UniqueFd> fds;
    if (daemon::Inheritance* inherited = shell_->inheritance()) {
        if (auto s = inherited->take("control", addr.to_string())) {
            fds = std::move(s->fds);
        }
    }
    while (fds.size() < shards_.size()) {
        auto fd = io::listen_tcp(addr, true, kBacklog);
        if (!fd) {
            log::event(Level::Error, log::Ev::BindFailed,
                       {{"LISTEN_ADDR", addr.to_string()}, {"REASON", fd.error().describe()}},
                       fmt::format("cannot listen on control address {}: {}", addr.to_string(),
                                   fd.error().describe()));
            return Unexpected(fd.error());
        }
        fds.push_back(std::move(*fd));
    }
    auto dups = daemon::dup_sockets(fds, fmt::format("control address {}", addr.to_string()));
    if (!dups) {
        return Unexpected(dups.error());
    }
    for (size_t i = 0; i < fds.size(); ++i) {
        shards_.invoke_on(static_cast<unsigned>(i % shards_.size()),
                          [f = std::move(fds[i]), addr](Shard& s, io::Worker& w) mutable {
                              s.add_control_listener(w, std::move(f), addr);
                          });
    }
    control_dups_[addr.to_string()] = std::move(*dups);
    log::event(Level::Info, log::Ev::ControlListen, {{"LISTEN_ADDR", addr.to_string()}},
               fmt::format("accepting agents on {}", addr.to_string()));
    return {};
}

void App::close_control(const SocketAddress& addr) {
    control_dups_.erase(addr.to_string());
    shards_.invoke_on_all([addr](Shard& s, io::Worker& w) { s.remove_control_listener(w, addr); });
}

ShardLimits App::shard_limits() const {
    return {std::chrono::milliseconds(cfg_.limits.pending_timeout_ms), cfg_.limits.idle_timeout_s,
            2 * std::chrono::milliseconds(cfg_.limits.handshake_timeout_ms)};
}

Result<void> App::setup() {
    auto shell =
        daemon::Shell::create(cfg_.relay.threads, daemon::io_data_path(cfg_.relay.data_path));
    if (!shell) {
        return Unexpected(shell.error());
    }
    shell_ = std::move(*shell);
    shell_->set_hooks({[this] { (void)reload(); },  // logged there
                       [this] { begin_drain(); }, [this] { tick(); },
                       [this] { return admission_->sessions(); }, [this] { return hand_over(); },
                       [this] { begin_drain(true); }});
    auto tls = make_tls(cfg_);
    if (!tls) {
        return Unexpected(tls.error());
    }
    warn_fd_budget(cfg_);
    const auto session_base = random_u64();
    const auto hash_key = random_u64();
    if (!session_base || !hash_key) {
        return Unexpected(!session_base ? session_base.error() : hash_key.error());
    }

    admission_ = std::make_unique<Admission>(
        AdmissionLimits{cfg_.limits.max_sessions, cfg_.limits.max_sessions_per_client,
                        cfg_.limits.max_new_sessions_per_client_per_s});
    const auto workers = shell_->workers();
    const auto rules = agent_rules();
    shards_.start(workers, [&](unsigned i) {
        ShardHooks hooks{
            [this](UniqueFd fd, const SocketAddress& peer, Poller::Clock::time_point accepted) {
                shell_->post([this, f = std::move(fd), peer, accepted]() mutable {
                    agents_->adopt_tls(std::move(f), peer, accepted);
                });
            },
            [this](unsigned worker, uint64_t agent, std::vector<control::Token> tokens,
                   bool initial) {
                shell_->post([this, worker, agent, t = std::move(tokens), initial]() mutable {
                    agents_->send_tokens(worker, agent, std::move(t), initial);
                });
            }};
        return std::make_unique<Shard>(i, shards_, SessionIds{*session_base, workers.size()},
                                       *admission_, std::move(hooks), shard_limits(), rules,
                                       *hash_key + i);
    });
    shards_.invoke_on_all([](Shard& s, io::Worker& w) { s.start(w); });
    listeners_ = std::make_unique<Listeners>(shards_, [this](const HostPorts& hp) {
        // The default allow_listen covers every port, the control port
        // included: an agent must never be able to take that one over.
        for (const auto& c : cfg_.relay.control_listen) {
            if (overlaps(hp, HostPorts{c.ip().to_string(), c.ip(), {c.port(), c.port()}})) {
                return false;
            }
        }
        return config::listen_allowed(cfg_, hp);
    });
    agents_ = std::make_unique<Agents>(shell_->poller(), *listeners_, shards_, reject_log_,
                                       std::move(*tls), Agents::Options{SP_VERSION});
    agents_->set_handshake_timeout(std::chrono::milliseconds(cfg_.limits.handshake_timeout_ms));
    listeners_->set_grace(std::chrono::milliseconds(cfg_.limits.listener_grace_ms));
    auto outbound =
        Outbound::create(cfg_, shards_,
                         {[this](UniqueFunction<void()> fn) { shell_->post(std::move(fn)); },
                          [this](uint64_t agent, const control::OutboundResult& r) {
                              return agents_->answer_outbound(agent, r);
                          }});
    if (!outbound) {
        return Unexpected(outbound.error());
    }
    outbound_ = std::move(*outbound);
    agents_->set_outbound([this](const AgentSession& s, const control::OutboundRequest& r) {
        outbound_->request(s.id(), s.name(), r);
    });
    if (daemon::Inheritance* inherited = shell_->inheritance()) {
        // The old process's services, held until their agents reconnect
        // here (it sends them GOODBYE(reload) once we are ready); clients
        // wait meanwhile, as in a listener grace.
        listeners_->adopt(inherited->take("service"), inherited->take("listener"),
                          std::max(std::chrono::milliseconds(cfg_.limits.listener_grace_ms),
                                   std::chrono::milliseconds(cfg_.limits.pending_timeout_ms)));
    }
    admin_ = std::make_unique<AdminCommands>(*shell_, shards_, *agents_, *listeners_);
    admin_->install();
    shell_->admin().set_reload([this] { return reload(); });
    // Before the control port: a second relay started on the same
    // configuration stops here, naming the live one that holds the socket.
    if (auto r = shell_->enable_admin(cfg_.relay.status_socket, cfg_.relay.metrics_listen); !r) {
        return Unexpected(r.error());
    }
    return listen_control();
}

void App::tick() {
    agents_->tick(Poller::Clock::now());
    listeners_->tick(std::chrono::steady_clock::now());
    shell_->status(fmt::format("{} agents, {} sessions, {} listeners", agents_->ready_count(),
                               admission_->sessions(), listeners_->count()));
}

Result<void> App::reload() {
    notify::reloading();
    auto fresh = config::load_relay_config(cfg_.path);
    if (!fresh) {
        log::event(Level::Error, log::Ev::ReloadFailed, {{"REASON", fresh.error().describe()}},
                   fmt::format("reload failed, keeping the running configuration: {}",
                               fresh.error().describe()));
        notify::ready();
        return Unexpected(fresh.error());
    }
    // Keys only a restart changes keep their running values, said by name.
    std::vector<daemon::KeptKey> kept;
    const auto keep = [&](bool changed, std::string key, std::string why) {
        if (changed) {
            kept.push_back({std::move(key), std::move(why)});
        }
    };
    keep(fresh->relay.threads != cfg_.relay.threads, "relay.threads",
         "the worker threads and their rings are created at start");
    // The status socket and the metrics endpoint move now; one that cannot
    // be opened at its new place keeps the old one, said by name.
    const auto move_error = daemon::move_admin(
        shell_->admin(), "relay", cfg_.relay.status_socket, fresh->relay.status_socket,
        cfg_.relay.metrics_listen, fresh->relay.metrics_listen);
    // control_listen: new addresses accept agents now; dropped ones stop
    // accepting (connected agents stay). One that cannot be bound is named
    // and the running list stays.
    {
        std::vector<SocketAddress> added;
        for (const auto& a : fresh->relay.control_listen) {
            if (std::find(cfg_.relay.control_listen.begin(), cfg_.relay.control_listen.end(), a) ==
                cfg_.relay.control_listen.end()) {
                added.push_back(a);
            }
        }
        std::vector<SocketAddress> opened;
        for (const auto& a : added) {
            if (auto r = open_control(a); !r) {
                kept.push_back({"relay.control_listen", r.error().describe()});
                break;
            }
            opened.push_back(a);
        }
        if (opened.size() != added.size()) {
            for (const auto& a : opened) {
                close_control(a);
            }
            fresh->relay.control_listen = cfg_.relay.control_listen;
        } else {
            for (const auto& a : cfg_.relay.control_listen) {
                if (std::find(fresh->relay.control_listen.begin(),
                              fresh->relay.control_listen.end(),
                              a) == fresh->relay.control_listen.end()) {
                    close_control(a);
                }
            }
        }
    }
    fresh->relay.threads = cfg_.relay.threads;
    // data_path applies to sessions that start from now on.
    if (fresh->relay.data_path != cfg_.relay.data_path) {
        shell_->set_data_path(daemon::io_data_path(fresh->relay.data_path));
    }
    const auto key_error = reload_auth(*fresh);
    cfg_ = std::move(*fresh);
    admission_->set_limits({cfg_.limits.max_sessions, cfg_.limits.max_sessions_per_client,
                            cfg_.limits.max_new_sessions_per_client_per_s});
    warn_fd_budget(cfg_);
    shards_.invoke_on_all([l = shard_limits()](Shard& s, io::Worker&) { s.set_limits(l); });
    // allow_agents/deny_agents apply to connected agents too: one kept
    // connected would hold its listeners while the front door refuses every
    // data channel it dials, so its clients would wait and be dropped.
    const auto rules = agent_rules();
    shards_.invoke_on_all([rules](Shard& s, io::Worker&) { s.set_agent_rules(rules); });
    agents_->deny(rules);
    agents_->set_handshake_timeout(std::chrono::milliseconds(cfg_.limits.handshake_timeout_ms));
    listeners_->set_grace(std::chrono::milliseconds(cfg_.limits.listener_grace_ms));
    // The listen policy reads cfg_: listeners a narrowed allow_listen no
    // longer permits close now, not at each agent's next CONFIG.
    listeners_->reapply();
    const auto kept_error = daemon::report_kept_keys(kept);
    log::event(log::Ev::Reload, {}, "relay configuration reloaded");
    notify::ready();
    if (key_error) {
        // The rest of the file applied; sallyportctl reload still says the
        // keys did not.
        return Unexpected(*key_error);
    }
    if (kept_error) {
        return Unexpected(*kept_error);
    }
    if (move_error) {
        return Unexpected(*move_error);
    }
    return {};
}

Result<std::vector<daemon::HandedSocket>> App::hand_over() const {
    auto out = listeners_->hand_over();
    if (!out) {
        return out;
    }
    for (const auto& [addr, dups] : control_dups_) {
        auto fds = daemon::dup_sockets(dups, fmt::format("control address {}", addr));
        if (!fds) {
            return Unexpected(fds.error());
        }
        out->push_back({"control", addr, "", std::move(*fds)});
    }
    return out;
}

std::optional<Error> App::reload_auth(config::RelayConfig& fresh) {
    const bool was_psk = psk_mode(cfg_);
    const bool now_psk = psk_mode(fresh);
    const auto refuse = [&](const Error& e, std::string_view what) {
        log::event(
            Level::Error, log::Ev::ReloadFailed, {{"REASON", e.describe()}},
            fmt::format("{} not reloaded, agents authenticate as before: {}", what, e.describe()));
        fresh.auth.keys = cfg_.auth.keys;
        fresh.auth.certificate = cfg_.auth.certificate;
        fresh.auth.private_key = cfg_.auth.private_key;
        fresh.auth.agent_ca = cfg_.auth.agent_ca;
        return e;
    };
    if (now_psk) {
        const auto old_keys = keys_;
        if (auto k = load_keys(fresh.auth.keys); !k) {
            return refuse(k.error(), "the key file");
        }
        if (!was_psk) {
            // Certificates to shared keys: agents connected with a
            // certificate re-authenticate with a key (or are refused).
            auto tls = make_tls(fresh);
            if (!tls) {
                keys_ = old_keys;
                return refuse(tls.error(), "the key file");
            }
            agents_->set_tls(std::move(*tls), true);
            agent_ca_bytes_.clear();
            return std::nullopt;
        }
        // Agents whose key is gone or changed lose their channel now.
        agents_->revoke([&](const std::string& id) {
            const auto now_it = keys_.find(id);
            const auto old_it = old_keys.find(id);
            return now_it == keys_.end() || old_it == old_keys.end() ||
                   now_it->second != old_it->second;
        });
        return std::nullopt;
    }
    // Certificate mode: the files are read again, changed contents under
    // the same names included. The relay's own certificate and key apply to
    // the next handshake; a changed agent CA, or a switch from shared keys,
    // makes every agent authenticate again under it.
    // make_tls records the CA it loaded: compare with the one before it.
    std::string old_ca = agent_ca_bytes_;
    auto tls = make_tls(fresh);
    if (!tls) {
        agent_ca_bytes_ = std::move(old_ca);
        return refuse(tls.error(), "the certificate, key or agent CA");
    }
    const bool reauth = was_psk || agent_ca_bytes_ != old_ca;
    agents_->set_tls(std::move(*tls), reauth);
    return std::nullopt;
}

void App::begin_drain(bool upgrade) {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    log::event(
        Level::Info, log::Ev::Stopping, {},
        fmt::format("{}: draining {} sessions for up to {} s", upgrade ? "upgraded" : "stopping",
                    admission_->sessions(), cfg_.relay.drain_timeout_s));
    // The sockets stay open in the successor: only our copies close.
    control_dups_.clear();
    agents_->shutdown(upgrade);
    // Listeners go first, the control port's included: the workers stop
    // once their inbox has run.
    shards_.invoke_on_all([](Shard& s, io::Worker& w) { s.remove_all_listeners(w); });
    shell_->begin_drain(std::chrono::seconds(cfg_.relay.drain_timeout_s));
}

int App::run() {
    log::event(Level::Info, log::Ev::Started, {},
               fmt::format("sallyport-relay {} started with {} workers ({} data path)", SP_VERSION,
                           shards_.size(), config::data_path_name(cfg_.relay.data_path)));
    const bool forced = shell_->run();
    log::event(Level::Info, log::Ev::Stopping, {},
               forced ? "drain timeout reached: remaining sessions closed; exiting"
                      : "all sessions drained; exiting");
    return 0;
}

}  // namespace sp::relay
