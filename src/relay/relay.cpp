// SPDX-License-Identifier: Apache-2.0
#include "relay/relay.hpp"

#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/notify.hpp"
#include "config.h"
#include "config/keys.hpp"
#include "control/token.hpp"
#include "io/net.hpp"

namespace sp::relay {

using log::Level;
using namespace std::chrono_literals;

namespace {

constexpr size_t kMaxHandshaking = 4096;  // silent connections beyond this are refused
constexpr size_t kMaxTokensPerAgent = 4096;

}  // namespace

struct Relay::Conn {
    enum class Stage { Classify, Handshake, ChannelHello, Agent };
    uint64_t id = 0;
    Stage stage = Stage::Classify;
    SocketAddress addr;
    UniqueFd fd;                                // until TLS takes it
    std::optional<control::TlsStream> tls;      // during the handshake
    std::unique_ptr<control::FramedPeer> peer;  // after it
    std::vector<uint8_t> hello;                 // data-channel hello bytes
    uint64_t timer = 0;
    int poll_fd = -1;
    // agent state
    bool greeted = false;
    bool configured = false;
    std::string name;
    std::string key_id;
    uint16_t pool = 0;
    uint32_t heartbeat_ms = control::kDefaultHeartbeatMs;
    size_t tokens_out = 0;
    unsigned next_worker = 0;
};

Relay::Relay(config::RelayConfig cfg)
    : cfg_(std::move(cfg)), registry_([this](const HostPorts& hp) {
          // The default allow_listen covers every port, the control port
          // included: an agent must never be able to take that one over.
          for (const auto& c : cfg_.relay.control_listen) {
              if (overlaps(hp, HostPorts{c.ip().to_string(), c.ip(), {c.port(), c.port()}})) {
                  return false;
              }
          }
          return config::listen_allowed(cfg_, hp);
      }) {}

// Pairings are used by the workers: stop those first.
Relay::~Relay() {
    daemon_.reset();
}

Result<std::unique_ptr<Relay>> Relay::create(config::RelayConfig cfg) {
    std::unique_ptr<Relay> r(new Relay(std::move(cfg)));  // private constructor
    if (auto s = r->setup(); !s) {
        return Unexpected(s.error());
    }
    return r;
}

Result<void> Relay::load_keys() {
    auto keys = config::load_keys(cfg_.auth.keys, false);
    if (!keys) {
        return Unexpected(keys.error());
    }
    keys_.clear();
    for (auto& k : *keys) {
        keys_[k.id] = std::move(k.secret);
    }
    return {};
}

Result<void> Relay::setup() {
    auto daemon = daemon::Shell::create(
        cfg_.relay.threads,
        cfg_.relay.data_path == config::DataPath::Copy ? io::DataPath::Copy : io::DataPath::Splice);
    if (!daemon) {
        return Unexpected(daemon.error());
    }
    daemon_ = std::move(*daemon);
    daemon_->set_hooks({[this] { reload(); }, [this] { begin_drain(); }, [this] { tick(); },
                        [this] { return admission_->sessions(); }});

    if (cfg_.shared_key_mode()) {
        if (auto k = load_keys(); !k) {
            return k;
        }
        // Looked up per handshake on this thread, so a reload that swaps
        // keys_ applies to the next agent without touching connected ones.
        auto ctx = control::TlsContext::psk_server(
            [this](std::string_view id) -> std::optional<std::vector<uint8_t>> {
                const auto it = keys_.find(std::string(id));
                if (it == keys_.end()) {
                    return std::nullopt;
                }
                return it->second;
            });
        if (!ctx) {
            return Unexpected(ctx.error());
        }
        tls_.emplace(std::move(*ctx));
    } else {
        auto ctx = control::TlsContext::cert_server(cfg_.auth.certificate, cfg_.auth.private_key,
                                                    cfg_.auth.agent_ca);
        if (!ctx) {
            return Unexpected(ctx.error());
        }
        tls_.emplace(std::move(*ctx));
    }

    uint64_t rnd = 0;
    if (::getrandom(&rnd, sizeof rnd, 0) != static_cast<ssize_t>(sizeof rnd)) {
        return errno_error("getrandom");
    }
    // Session ids: 24 random bits per process start, 8 bits of worker, 32 of
    // counter, so ids stay unique across restarts in the journal.
    session_base_ = rnd & 0xffffff0000000000ULL;

    admission_ = std::make_unique<Admission>(
        AdmissionLimits{cfg_.limits.max_sessions, cfg_.limits.max_sessions_per_client,
                        cfg_.limits.max_new_sessions_per_client_per_s});
    for (unsigned i = 0; i < workers().size(); ++i) {
        PairingHooks hooks{[this](unsigned worker, const std::string& service) {
                               post([this, worker, service] { on_need_channel(worker, service); });
                           },
                           [this](unsigned worker, uint64_t agent) {
                               post([this, worker, agent] { on_channel_used(worker, agent); });
                           }};
        pairings_.push_back(std::make_unique<Pairing>(
            i, session_base_ | (static_cast<uint64_t>(i) << 32), *admission_, std::move(hooks),
            PairingLimits{std::chrono::milliseconds(cfg_.limits.pending_timeout_ms),
                          cfg_.limits.idle_timeout_s}));
    }

    for (const auto& addr : cfg_.relay.control_listen) {
        auto fd = io::listen_tcp(addr, false, 1024);
        if (!fd) {
            log::event(Level::Error, "bind-failed",
                       {{"LISTEN_ADDR", addr.to_string()}, {"REASON", fd.error().describe()}},
                       fmt::format("cannot listen on control address {}: {}", addr.to_string(),
                                   fd.error().describe()));
            return Unexpected(fd.error());
        }
        const int raw = fd->get();
        if (auto r = poller().add(raw, EPOLLIN, [this, raw](uint32_t) { on_control_accept(raw); });
            !r) {
            return r;
        }
        control_fds_.push_back(std::move(*fd));
        log::event(Level::Info, "control-listen", {{"LISTEN_ADDR", addr.to_string()}},
                   fmt::format("accepting agents on {}", addr.to_string()));
    }
    return {};
}

size_t Relay::agent_count() const {
    return static_cast<size_t>(std::count_if(conns_.begin(), conns_.end(), [](const auto& kv) {
        return kv.second->stage == Conn::Stage::Agent && kv.second->greeted;
    }));
}

void Relay::on_control_accept(int listen_fd) {
    for (int i = 0; i < 64; ++i) {
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        UniqueFd fd(::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len,
                              SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            const int err = errno;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                if (resource_log_.allow("control", Poller::Clock::now()) >= 0) {
                    log::event(Level::Warn, "resource-limit", {{"REASON", std::strerror(err)}},
                               fmt::format("accept on the control port failed: {}; pausing "
                                           "accepts for 100 ms",
                                           std::strerror(err)));
                }
                // The socket stays readable: without a pause, level-triggered
                // epoll would spin on the same error until an fd frees up.
                poller().modify(listen_fd, 0);
                poller().add_timer(100ms, [this, listen_fd] {
                    if (!stopping_) {
                        poller().modify(listen_fd, EPOLLIN);
                    }
                });
            }
            return;
        }
        const auto peer = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
        if (!peer) {
            continue;
        }
        const auto& a = cfg_.auth;
        if (!client_allowed(peer->ip(), a.allow_agents, a.deny_agents)) {
            if (const int64_t held =
                    reject_log_.allow(peer->ip().to_string(), Poller::Clock::now());
                held >= 0) {
                log::event(Level::Warn, "agent-rejected",
                           {{"AGENT_ADDR", peer->ip().to_string()},
                            {"REASON", "not-allowed"},
                            {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
                           fmt::format("connection from {} refused by allow_agents/deny_agents{}",
                                       peer->to_string(), LogLimiter::held_note(held)));
            }
            continue;  // closed without a byte: no TLS work for strangers
        }
        if (handshaking_ >= kMaxHandshaking || stopping_) {
            continue;
        }
        auto c = std::make_unique<Conn>();
        c->id = next_conn_++;
        c->addr = *peer;
        c->poll_fd = fd.get();
        c->fd = std::move(fd);
        const uint64_t id = c->id;
        if (!poller().add(c->poll_fd, EPOLLIN,
                          [this, id](uint32_t ev) { on_conn_event(id, ev); })) {
            continue;
        }
        c->timer = poller().add_timer(std::chrono::milliseconds(cfg_.limits.handshake_timeout_ms),
                                      [this, id] {
                                          close_conn(id, "agent-rejected", "handshake-timeout",
                                                     "no complete hello within "
                                                     "handshake_timeout_ms");
                                      });
        ++handshaking_;
        conns_.emplace(id, std::move(c));
    }
}

void Relay::close_conn(uint64_t id, std::string_view event, std::string_view reason,
                       std::string_view message) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    std::unique_ptr<Conn> c = std::move(it->second);
    conns_.erase(it);
    poller().remove(c->poll_fd);
    poller().cancel_timer(c->timer);
    if (c->stage != Conn::Stage::Agent || !c->greeted) {
        --handshaking_;
    }
    if (!event.empty()) {
        const bool rejected = event == "agent-rejected";
        const int64_t held =
            rejected ? reject_log_.allow(c->addr.ip().to_string(), Poller::Clock::now()) : 0;
        if (held >= 0) {
            log::event(rejected ? Level::Warn : Level::Info, event,
                       {{"AGENT", c->name},
                        {"AGENT_ADDR", c->addr.ip().to_string()},
                        {"KEY_ID", c->key_id},
                        {"REASON", std::string(reason)},
                        {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
                       fmt::format("{}{}", message, LogLimiter::held_note(held)));
        }
    }
    if (c->stage != Conn::Stage::Agent || !c->greeted) {
        return;
    }
    // An agent left: drop what it served. Listeners of services nobody else
    // serves close; sessions already paired carry on untouched.
    std::erase_if(tokens_, [&](const auto& kv) { return kv.second.agent == id; });
    for (size_t i = 0; i < workers().size(); ++i) {
        workers()[i]->post([p = pairings_[i].get(), id](io::Worker&) { p->drop_agent(id); });
    }
    const bool had_listeners = !registry_.listeners().empty();
    for (const auto& action : registry_.remove_agent(id)) {
        close_listener(action.address, action.service);
    }
    broadcast_services();
    if (had_listeners && registry_.listeners().empty() && !stopping_) {
        log::event(Level::Warn, "listeners-suspended", {{"AGENT", c->name}},
                   "no agent left: public listeners closed until an agent connects");
    }
}

void Relay::update_poll(Conn& c) {
    if (c.peer) {
        poller().modify(c.poll_fd, c.peer->poll_events());
    }
}

void Relay::on_conn_event(uint64_t id, uint32_t events) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    Conn& c = *it->second;
    switch (c.stage) {
        case Conn::Stage::Classify:
            classify(c);
            break;
        case Conn::Stage::Handshake:
            step_handshake(c);
            break;
        case Conn::Stage::ChannelHello:
            read_channel_hello(c);
            break;
        case Conn::Stage::Agent:
            on_peer_event(c, events);
            break;
    }
}

void Relay::classify(Conn& c) {
    uint8_t buf[control::kClassifyBytes];
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        close_conn(c.id, "", "", "");
        return;
    }
    if (n < 0) {
        return;
    }
    switch (control::classify_first_bytes(std::span(buf, static_cast<size_t>(n)))) {
        case control::FirstBytes::NeedMore:
            return;  // level-triggered: more bytes bring us back
        case control::FirstBytes::Garbage:
            close_conn(c.id, "agent-rejected", "protocol",
                       "first bytes are neither TLS nor a data-channel hello");
            return;
        case control::FirstBytes::DataChannel:
            c.stage = Conn::Stage::ChannelHello;
            read_channel_hello(c);
            return;
        case control::FirstBytes::Tls: {
            auto s = control::TlsStream::create(*tls_, std::move(c.fd));
            if (!s) {
                close_conn(c.id, "agent-rejected", "protocol", s.error().describe());
                return;
            }
            c.tls.emplace(std::move(*s));
            c.stage = Conn::Stage::Handshake;
            step_handshake(c);
            return;
        }
    }
}

void Relay::read_channel_hello(Conn& c) {
    uint8_t buf[control::kChannelHelloSize];
    const size_t want = control::kChannelHelloSize - c.hello.size();
    // Read exactly the hello: bytes after it belong to the session.
    const ssize_t n = ::recv(c.fd.get(), buf, want, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        close_conn(c.id, "", "", "");
        return;
    }
    if (n < 0) {
        return;
    }
    c.hello.insert(c.hello.end(), buf, buf + n);
    const auto r = control::decode_channel_hello(c.hello);
    if (r.status == control::DecodeStatus::NeedMore) {
        return;
    }
    if (r.status == control::DecodeStatus::Error) {
        close_conn(c.id, "agent-rejected", "protocol", r.error);
        return;
    }
    const auto grant = std::find_if(tokens_.begin(), tokens_.end(), [&](const auto& kv) {
        return control::token_equal(kv.first, r.token);
    });
    if (grant == tokens_.end() || grant->second.expires < Poller::Clock::now()) {
        close_conn(c.id, "agent-rejected", "bad-key", "data channel with an unknown token");
        return;
    }
    const Grant g = grant->second;
    tokens_.erase(grant);  // single use
    const auto agent = conns_.find(g.agent);
    if (agent == conns_.end()) {
        close_conn(c.id, "", "", "");
        return;
    }
    if (agent->second->tokens_out > 0) {
        --agent->second->tokens_out;
    }
    UniqueFd fd = std::move(c.fd);
    const std::string name = agent->second->name;
    // The agent's pool, spread over the workers, bounds what each keeps idle.
    const size_t max_idle = (agent->second->pool + workers().size() - 1) / workers().size();
    close_conn(c.id, "", "", "");  // forgets the handshake state; fd moved out above
    workers()[g.worker]->post(
        [p = pairings_[g.worker].get(), agent_id = g.agent, name, max_idle,
         f = std::make_shared<UniqueFd>(std::move(fd))](io::Worker& w) mutable {
            p->add_channel(w, agent_id, name, std::move(*f), max_idle);
        });
}

void Relay::step_handshake(Conn& c) {
    const auto r = c.tls->handshake();
    if (r.status == control::TlsStatus::WantRead) {
        poller().modify(c.poll_fd, EPOLLIN);
        return;
    }
    if (r.status == control::TlsStatus::WantWrite) {
        poller().modify(c.poll_fd, EPOLLOUT);
        return;
    }
    if (r.status != control::TlsStatus::Done) {
        const char* reason = r.failure == control::TlsFailure::BadKey ? "bad-key" : "protocol";
        close_conn(c.id, "agent-rejected", reason, fmt::format("TLS handshake: {}", r.reason));
        return;
    }
    c.key_id = c.tls->peer_identity();
    c.peer = std::make_unique<control::FramedPeer>(std::move(*c.tls));
    c.tls.reset();
    c.stage = Conn::Stage::Agent;
    update_poll(c);
}

void Relay::on_peer_event(Conn& c, uint32_t events) {
    const uint64_t id = c.id;
    if ((events & EPOLLOUT) != 0 && !c.peer->flush()) {
        close_conn(id, c.greeted ? "agent-disconnected" : "agent-rejected", "protocol",
                   "write to agent failed");
        return;
    }
    const auto out =
        c.peer->read_frames([&](control::Message&& m) { return on_message(c, std::move(m)); });
    if (!conns_.contains(id)) {
        return;  // on_message closed it
    }
    if (out.status == control::FramedPeer::ReadStatus::Eof) {
        close_conn(id, c.greeted ? "agent-disconnected" : "agent-rejected",
                   c.greeted ? "closed" : "protocol", "agent closed the control channel");
        return;
    }
    if (out.status == control::FramedPeer::ReadStatus::Error) {
        close_conn(id, c.greeted ? "agent-disconnected" : "agent-rejected",
                   out.reason == control::GoodbyeReason::Version ? "version" : "protocol",
                   out.error);
        return;
    }
    update_poll(c);
}

bool Relay::on_message(Conn& c, control::Message&& m) {
    using namespace control;
    if (!c.greeted) {
        if (const auto* h = std::get_if<Hello>(&m)) {
            on_hello(c, *h);
            return conns_.contains(c.id);
        }
        c.peer->goodbye(GoodbyeReason::ProtocolError, "expected HELLO");
        close_conn(c.id, "agent-rejected", "protocol", "first frame was not HELLO");
        return false;
    }
    if (const auto* cfg = std::get_if<Config>(&m)) {
        apply_config(c, *cfg);
        return true;
    }
    if (std::holds_alternative<Heartbeat>(m)) {
        return true;  // last_rx already moved
    }
    if (const auto* g = std::get_if<Goodbye>(&m)) {
        close_conn(c.id, "agent-disconnected", to_string(g->reason), g->message);
        return false;
    }
    if (const auto* bf = std::get_if<BackendFailed>(&m)) {
        log::event(Level::Warn, "backend-failed",
                   {{"SESSION_ID", fmt::format("{:016x}", bf->session_id)},
                    {"AGENT", c.name},
                    {"BACKEND_ADDR", bf->backend},
                    {"REASON", std::strerror(bf->error)}},
                   fmt::format("agent {} could not reach backend {}", c.name, bf->backend));
        return true;
    }
    if (const auto* o = std::get_if<OutboundRequest>(&m)) {
        // The forward proxy is not built yet: say so rather than hang.
        (void)c.peer->send(OutboundResult{o->request_id, OutboundStatus::Disabled, 0, {}});
        return true;
    }
    c.peer->goodbye(GoodbyeReason::ProtocolError, "unexpected message");
    close_conn(c.id, "agent-disconnected", "protocol",
               fmt::format("unexpected {} from agent", to_string(type_of(m))));
    return false;
}

void Relay::on_hello(Conn& c, const control::Hello& h) {
    using namespace control;
    if (h.min_version > kProtocolVersion || h.max_version < kMinProtocolVersion) {
        c.peer->goodbye(GoodbyeReason::Version, fmt::format("relay speaks protocol {}-{}",
                                                            kMinProtocolVersion, kProtocolVersion));
        close_conn(c.id, "agent-rejected", "version",
                   fmt::format("agent speaks protocol {}-{}, relay {}-{}", h.min_version,
                               h.max_version, kMinProtocolVersion, kProtocolVersion));
        return;
    }
    c.name = h.agent_name;
    c.pool = h.pool_size;
    c.heartbeat_ms = std::clamp(h.heartbeat_ms, kMinHeartbeatMs, kMaxHeartbeatMs);
    // A restarted agent may reach us before its old connection is noticed
    // dead: the newer one wins, as the old one cannot be answering anyway.
    for (const auto& [oid, other] : conns_) {
        if (oid != c.id && other->greeted && other->name == c.name) {
            other->peer->goodbye(GoodbyeReason::Replaced, "a newer connection took over");
            close_conn(oid, "agent-disconnected", "replaced",
                       "replaced by a newer connection of the same agent");
            break;
        }
    }
    c.greeted = true;
    --handshaking_;
    poller().cancel_timer(c.timer);
    c.timer = 0;
    (void)c.peer->send(HelloAck{kProtocolVersion, SP_VERSION, c.heartbeat_ms, c.id});
    log::event(Level::Info, "agent-connected",
               {{"AGENT", c.name}, {"AGENT_ADDR", c.addr.ip().to_string()}, {"KEY_ID", c.key_id}},
               fmt::format("agent \"{}\" connected from {} (software {})", c.name,
                           c.addr.to_string(), h.software_version));
}

int Relay::open_listener(const SocketAddress& addr, const std::string& service) {
    std::vector<UniqueFd> fds;
    for (size_t i = 0; i < workers().size(); ++i) {
        // One SO_REUSEPORT socket per worker: the kernel spreads clients
        // across workers and no accept ever crosses threads.
        auto fd = io::listen_tcp(addr, true, 1024);
        if (!fd) {
            return fd.error().code != 0 ? fd.error().code : EINVAL;
        }
        fds.push_back(std::move(*fd));
    }
    const uint64_t key = next_listener_key_++;
    listener_keys_[addr.to_string()] = key;
    for (size_t i = 0; i < workers().size(); ++i) {
        workers()[i]->post([p = pairings_[i].get(), key, service, addr,
                            f = std::make_shared<UniqueFd>(std::move(fds[i]))](io::Worker& w) {
            p->add_listener(w, key, std::move(*f), service, addr);
        });
    }
    log::event(Level::Info, "listener-open",
               {{"SERVICE", service}, {"LISTEN_ADDR", addr.to_string()}},
               fmt::format("listening on {} for {}", addr.to_string(), service));
    return 0;
}

void Relay::close_listener(const SocketAddress& addr, const std::string& service) {
    const auto it = listener_keys_.find(addr.to_string());
    if (it == listener_keys_.end()) {
        return;
    }
    const uint64_t key = it->second;
    listener_keys_.erase(it);
    for (size_t i = 0; i < workers().size(); ++i) {
        workers()[i]->post(
            [p = pairings_[i].get(), key](io::Worker& w) { p->remove_listener(w, key); });
    }
    log::event(Level::Info, "listener-closed",
               {{"SERVICE", service}, {"LISTEN_ADDR", addr.to_string()}},
               fmt::format("stopped listening on {} for {}", addr.to_string(), service));
}

void Relay::broadcast_services() {
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
        std::shared_ptr<const ServicePolicy> shared = std::move(policy);
        for (size_t i = 0; i < workers().size(); ++i) {
            workers()[i]->post(
                [p = pairings_[i].get(), shared](io::Worker&) { p->set_service(shared); });
        }
    }
    for (const auto& gone : broadcast_names_) {
        if (!now.contains(gone)) {
            for (size_t i = 0; i < workers().size(); ++i) {
                workers()[i]->post(
                    [p = pairings_[i].get(), gone](io::Worker& w) { p->remove_service(w, gone); });
            }
        }
    }
    broadcast_names_ = std::move(now);
}

void Relay::apply_config(Conn& c, const control::Config& cfg) {
    using control::ListenResult;
    std::vector<ServiceSpec> specs;
    std::vector<ListenResult> invalid;
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
                invalid.push_back({s.name, l, control::ListenStatus::Invalid, 0, bad});
            }
            continue;
        }
        specs.push_back(std::move(spec));
    }

    ApplyOutcome out = registry_.apply(c.id, specs);
    std::map<std::string, int> bind_failed;  // service -> errno
    for (const auto& a : out.actions) {
        if (a.kind == ListenerAction::Kind::Close) {
            close_listener(a.address, a.service);
        } else if (!bind_failed.contains(a.service)) {
            if (const int err = open_listener(a.address, a.service); err != 0) {
                bind_failed[a.service] = err;
                log::event(Level::Error, "bind-failed",
                           {{"SERVICE", a.service},
                            {"LISTEN_ADDR", a.address.to_string()},
                            {"AGENT", c.name},
                            {"REASON", std::strerror(err)}},
                           fmt::format("cannot listen on {} for {}: {}", a.address.to_string(),
                                       a.service, std::strerror(err)));
            }
        }
    }
    for (const auto& [service, err] : bind_failed) {
        for (const auto& action : registry_.drop_service(service)) {
            close_listener(action.address, action.service);
        }
    }
    broadcast_services();

    control::ConfigResult result;
    result.generation = cfg.generation;
    size_t ok = 0;
    for (auto& r : out.results) {
        ListenResult lr{r.service, r.listen, r.status, 0, r.message};
        if (const auto bf = bind_failed.find(r.service); bf != bind_failed.end()) {
            lr.status = control::ListenStatus::BindFailed;
            lr.error = bf->second;
            lr.message = std::strerror(bf->second);
        }
        if (lr.status == control::ListenStatus::Ok) {
            ++ok;
        } else {
            log::event(Level::Warn, "config-rejected",
                       {{"AGENT", c.name},
                        {"SERVICE", lr.service},
                        {"LISTEN_ADDR", lr.listen},
                        {"REASON", std::string(control::to_string(lr.status))}},
                       fmt::format("agent \"{}\" service \"{}\" listen {}: {}", c.name, lr.service,
                                   lr.listen, lr.message));
        }
        result.results.push_back(std::move(lr));
    }
    for (auto& r : invalid) {
        log::event(Level::Warn, "config-rejected",
                   {{"AGENT", c.name}, {"SERVICE", r.service}, {"REASON", "invalid"}},
                   fmt::format("agent \"{}\" service \"{}\": {}", c.name, r.service, r.message));
        result.results.push_back(std::move(r));
    }
    log::event(Level::Info, "config-applied", {{"AGENT", c.name}},
               fmt::format("agent \"{}\" config generation {}: {} of {} listen entries active",
                           c.name, cfg.generation, ok, result.results.size()));
    (void)c.peer->send(result);

    if (!c.configured) {
        c.configured = true;
        // Spread the agent's idle pool over the workers, so every worker
        // can pair its first clients without asking.
        for (unsigned i = 0; i < c.pool; ++i) {
            issue_tokens(c, static_cast<unsigned>((c.next_worker++) % workers().size()), 1);
        }
    }
}

void Relay::issue_tokens(Conn& agent, unsigned worker, unsigned count) {
    control::OpenChannels oc;
    for (unsigned i = 0; i < count && agent.tokens_out < kMaxTokensPerAgent; ++i) {
        auto t = control::random_token();
        if (!t) {
            return;
        }
        // Lifetime as the protocol doc says: twice the handshake bound, so a
        // token leaked from a dead connection is soon worthless.
        const auto lifetime = 2 * std::chrono::milliseconds(cfg_.limits.handshake_timeout_ms);
        tokens_[*t] = Grant{agent.id, worker, Poller::Clock::now() + lifetime};
        oc.tokens.push_back(*t);
        ++agent.tokens_out;
    }
    if (!oc.tokens.empty()) {
        (void)agent.peer->send(oc);
        update_poll(agent);
    }
}

void Relay::on_need_channel(unsigned worker, const std::string& service) {
    const auto agents = registry_.agents_of(service);
    if (agents.empty()) {
        return;
    }
    const uint64_t pick = agents[rotate_++ % agents.size()];
    if (const auto it = conns_.find(pick); it != conns_.end()) {
        issue_tokens(*it->second, worker, 1);
    }
}

void Relay::on_channel_used(unsigned worker, uint64_t agent) {
    const auto it = conns_.find(agent);
    if (it == conns_.end() || it->second->pool == 0 || stopping_) {
        return;
    }
    issue_tokens(*it->second, worker, 1);
}

void Relay::tick() {
    const auto now = Poller::Clock::now();
    std::vector<uint64_t> dead;
    for (auto& [id, c] : conns_) {
        if (c->stage != Conn::Stage::Agent || !c->greeted) {
            continue;
        }
        const auto hb = std::chrono::milliseconds(c->heartbeat_ms);
        if (now - c->peer->last_rx() > hb * control::kDeadAfterIntervals) {
            dead.push_back(id);
            continue;
        }
        if (now - c->peer->last_tx() >= hb) {
            const auto ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch())
                    .count();
            (void)c->peer->send(control::Heartbeat{static_cast<uint64_t>(ms)});
            update_poll(*c);
        }
    }
    for (const uint64_t id : dead) {
        close_conn(id, "agent-disconnected", "timeout",
                   "agent silent for three heartbeat intervals");
    }
    std::erase_if(tokens_, [&](const auto& kv) {
        if (kv.second.expires >= now) {
            return false;
        }
        if (const auto it = conns_.find(kv.second.agent);
            it != conns_.end() && it->second->tokens_out > 0) {
            --it->second->tokens_out;
        }
        return true;
    });
    const std::string status = fmt::format("{} agents, {} sessions, {} listeners", agent_count(),
                                           admission_->sessions(), registry_.listeners().size());
    daemon_->status(status);
}

void Relay::reload() {
    notify::reloading();
    log::event(Level::Info, "reload", {}, "reloading configuration");
    auto fresh = config::load_relay_config(cfg_.path);
    if (!fresh) {
        log::event(Level::Error, "reload-failed", {{"REASON", fresh.error().describe()}},
                   fmt::format("reload failed, keeping the running configuration: {}",
                               fresh.error().describe()));
        notify::ready();
        return;
    }
    if (fresh->relay.control_listen.size() != cfg_.relay.control_listen.size() ||
        !std::equal(fresh->relay.control_listen.begin(), fresh->relay.control_listen.end(),
                    cfg_.relay.control_listen.begin()) ||
        fresh->relay.threads != cfg_.relay.threads ||
        fresh->relay.data_path != cfg_.relay.data_path) {
        log::event(Level::Warn, "reload", {},
                   "control_listen, threads and data_path change only on restart, ignoring");
    }
    const auto old_keys = keys_;
    const auto cl = cfg_.relay.control_listen;
    const auto th = cfg_.relay.threads;
    const auto dp = cfg_.relay.data_path;
    cfg_ = std::move(*fresh);
    cfg_.relay.control_listen = cl;
    cfg_.relay.threads = th;
    cfg_.relay.data_path = dp;
    admission_->set_limits({cfg_.limits.max_sessions, cfg_.limits.max_sessions_per_client,
                            cfg_.limits.max_new_sessions_per_client_per_s});
    for (size_t i = 0; i < workers().size(); ++i) {
        const PairingLimits pl{std::chrono::milliseconds(cfg_.limits.pending_timeout_ms),
                               cfg_.limits.idle_timeout_s};
        workers()[i]->post([p = pairings_[i].get(), pl](io::Worker&) { p->set_limits(pl); });
    }
    if (cfg_.shared_key_mode()) {
        if (auto k = load_keys(); !k) {
            keys_ = old_keys;
            log::event(Level::Error, "reload-failed", {{"REASON", k.error().describe()}},
                       fmt::format("key file not reloaded, keeping the old keys: {}",
                                   k.error().describe()));
        } else {
            // Agents whose key is gone or changed lose their channel now.
            std::vector<uint64_t> revoked;
            for (const auto& [id, c] : conns_) {
                if (c->stage != Conn::Stage::Agent) {
                    continue;
                }
                const auto now_it = keys_.find(c->key_id);
                const auto old_it = old_keys.find(c->key_id);
                if (now_it == keys_.end() || old_it == old_keys.end() ||
                    now_it->second != old_it->second) {
                    revoked.push_back(id);
                }
            }
            for (const uint64_t id : revoked) {
                conns_.at(id)->peer->goodbye(control::GoodbyeReason::BadKey,
                                             "key removed from the relay");
                close_conn(id, "agent-rejected", "bad-key",
                           "key removed or changed by reload: agent disconnected");
            }
        }
    }
    // Client rules of connected agents are theirs; allow_agents applies to
    // agents that connect from now on, as with any firewall change.
    log::event(Level::Info, "config-applied", {}, "relay configuration reloaded");
    notify::ready();
}

void Relay::begin_drain() {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    log::event(Level::Info, "stopping", {},
               fmt::format("stopping: draining {} sessions for up to {} s", admission_->sessions(),
                           cfg_.relay.drain_timeout_s));
    for (auto& fd : control_fds_) {
        poller().remove(fd.get());
    }
    control_fds_.clear();
    std::vector<uint64_t> ids;
    for (const auto& [id, c] : conns_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        const auto it = conns_.find(id);
        if (it != conns_.end() && it->second->peer) {
            it->second->peer->goodbye(control::GoodbyeReason::Shutdown, "relay stopping");
        }
        close_conn(id, it != conns_.end() && it->second->greeted ? "agent-disconnected" : "",
                   "shutdown", "relay stopping");
    }
    // Listeners go first: the workers stop once their inbox has run.
    for (size_t i = 0; i < workers().size(); ++i) {
        workers()[i]->post([p = pairings_[i].get()](io::Worker& w) { p->remove_all_listeners(w); });
    }
    daemon_->begin_drain(std::chrono::seconds(cfg_.relay.drain_timeout_s));
}

int Relay::run() {
    log::event(Level::Info, "started", {},
               fmt::format("sallyport-relay {} started with {} workers ({} data path)", SP_VERSION,
                           workers().size(), config::data_path_name(cfg_.relay.data_path)));
    const bool forced = daemon_->run();
    log::event(Level::Info, "stopping", {},
               forced ? "drain timeout reached: remaining sessions closed; exiting"
                      : "all sessions drained; exiting");
    return 0;
}

}  // namespace sp::relay
