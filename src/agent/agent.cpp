// SPDX-License-Identifier: Apache-2.0
#include "agent/agent.hpp"

#include <netdb.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "agent/proxy_header.hpp"
#include "base/event.hpp"
#include "base/notify.hpp"
#include "config.h"
#include "config/keys.hpp"
#include "io/daemon.hpp"
#include "io/net.hpp"

namespace sp::agent {

using log::Level;
using namespace std::chrono_literals;

namespace {

constexpr auto kConnectTimeout = 10s;        // TCP + TLS + HELLO_ACK to a relay
constexpr auto kBindingTimeout = 24h;        // an idle pooled channel may wait long
constexpr auto kBackendConnectTimeout = 5s;  // per backend attempt
constexpr auto kBackendFailHold = 5s;        // skip a refusing backend this long
constexpr auto kDrainTimeout = 30s;          // the agent has no drain_timeout_s key
constexpr size_t kMaxChannels = 65536;       // dialled and not yet spliced

// Names are resolved on the control thread: it blocks the control plane for
// the resolver's time, never the data plane, and relays and backends are few.
std::optional<SocketAddress> resolve(const std::string& host, uint16_t port) {
    if (auto ip = IpAddress::parse(host); ip) {
        return SocketAddress(*ip, port);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
        return std::nullopt;
    }
    auto addr = SocketAddress::from_sockaddr(res->ai_addr, res->ai_addrlen);
    ::freeaddrinfo(res);
    if (!addr) {
        return std::nullopt;
    }
    return SocketAddress(addr->ip(), port);
}

uint64_t random_seed() {
    uint64_t s = 0;
    if (::getrandom(&s, sizeof s, 0) != static_cast<ssize_t>(sizeof s)) {
        s = static_cast<uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ULL;
    }
    return s;
}

}  // namespace

struct Agent::Link {
    enum class State { Down, Connecting, Handshake, AwaitAck, Ready };
    size_t index = 0;
    config::RelayEntry entry;
    std::optional<control::TlsContext> tls;
    State state = State::Down;
    UniqueFd fd;
    std::optional<control::TlsStream> hs;
    std::unique_ptr<control::FramedPeer> peer;
    int poll_fd = -1;
    control::Backoff backoff{500ms, 30s, 1};
    uint64_t retry_timer = 0;
    uint64_t timeout_timer = 0;
    std::optional<SocketAddress> resolved;
    uint32_t heartbeat_ms = control::kDefaultHeartbeatMs;
    bool wanted = false;
    std::string name() const { return entry.address.to_string(); }
};

struct Agent::Channel {
    enum class Stage { Dialing, Idle, Backend };
    uint64_t id = 0;
    size_t link = 0;
    Stage stage = Stage::Dialing;
    UniqueFd fd;
    control::Token token{};
    std::vector<uint8_t> buf;
    control::Binding binding;
    std::optional<SocketAddress> client;
    std::optional<SocketAddress> listen;
    UniqueFd backend;
    std::optional<BackendTarget> target;
    std::string backend_addr;
    size_t tried = 0;
    uint64_t timer = 0;
};

Agent::Agent(config::AgentConfig cfg) : cfg_(std::move(cfg)) {}

// Session callbacks of the workers use this object: stop them first.
Agent::~Agent() {
    daemon_.reset();
}

Result<std::unique_ptr<Agent>> Agent::create(config::AgentConfig cfg) {
    std::unique_ptr<Agent> a(new Agent(std::move(cfg)));  // private constructor
    if (auto r = a->setup(); !r) {
        return Unexpected(r.error());
    }
    return a;
}

Result<void> Agent::build_links() {
    std::vector<std::unique_ptr<Link>> links;
    const uint64_t seed = random_seed();
    for (size_t i = 0; i < cfg_.relays.size(); ++i) {
        auto l = std::make_unique<Link>();
        l->index = i;
        l->entry = cfg_.relays[i];
        l->backoff = control::Backoff(500ms, 30s, seed + i * 7919);
        if (l->entry.shared_key_mode()) {
            auto keys = config::load_keys(l->entry.key, true);
            if (!keys) {
                return Unexpected(keys.error());
            }
            auto ctx = control::TlsContext::psk_client(keys->front().id, keys->front().secret);
            if (!ctx) {
                return Unexpected(ctx.error());
            }
            l->tls.emplace(std::move(*ctx));
        } else {
            auto ctx = control::TlsContext::cert_client(l->entry.certificate, l->entry.private_key,
                                                        l->entry.relay_ca);
            if (!ctx) {
                return Unexpected(ctx.error());
            }
            l->tls.emplace(std::move(*ctx));
        }
        links.push_back(std::move(l));
    }
    links_ = std::move(links);
    return {};
}

void Agent::build_selectors() {
    selectors_.clear();
    for (const auto& s : cfg_.services) {
        selectors_[s.name] = std::make_unique<BackendSelector>(
            s.listen, s.backend, std::chrono::seconds(s.affinity_s), kBackendFailHold);
    }
}

Result<void> Agent::setup() {
    auto daemon = io::Daemon::create(
        cfg_.agent.threads,
        cfg_.agent.data_path == config::DataPath::Copy ? io::DataPath::Copy : io::DataPath::Splice);
    if (!daemon) {
        return Unexpected(daemon.error());
    }
    daemon_ = std::move(*daemon);
    daemon_->set_hooks({[this] { reload(); }, [this] { begin_drain(); }, [this] { tick(); },
                        [this] { return sessions_.load(); }});
    if (auto r = build_links(); !r) {
        return r;
    }
    build_selectors();
    return {};
}

control::Config Agent::wire_config() const {
    control::Config c;
    c.generation = generation_;
    for (const auto& s : cfg_.services) {
        control::ServiceSpec w;
        w.name = s.name;
        for (const auto& l : s.listen) {
            w.listen.push_back(l.to_string());
        }
        for (const auto& a : s.allow_clients) {
            w.allow_clients.push_back(a.to_string());
        }
        for (const auto& d : s.deny_clients) {
            w.deny_clients.push_back(d.to_string());
        }
        w.max_sessions = s.max_sessions;
        w.affinity_s = s.affinity_s;
        c.services.push_back(std::move(w));
    }
    return c;
}

// Standby relays are used only while no primary is up: they take over when
// every primary is gone and hand back when one returns. A standby is not
// started while a primary attempt is still in flight (at start-up, say), so
// its relay does not open listeners for a moment only to close them again.
void Agent::update_wanted() {
    // Primaries first: whether they are up or trying decides the standbys.
    for (auto& l : links_) {
        if (l->entry.standby) {
            continue;
        }
        l->wanted = !stopping_;
        if (!l->wanted && l->state != Link::State::Down) {
            link_down(*l, "shutdown", "agent stopping", false);
        } else if (l->wanted && l->state == Link::State::Down && l->retry_timer == 0) {
            connect_link(*l);
        }
    }
    bool primary_up = false;
    bool primary_trying = false;
    for (const auto& l : links_) {
        if (!l->entry.standby) {
            primary_up = primary_up || l->state == Link::State::Ready;
            primary_trying =
                primary_trying || (l->state != Link::State::Ready && l->state != Link::State::Down);
        }
    }
    for (auto& l : links_) {
        if (!l->entry.standby) {
            continue;
        }
        if (stopping_ || primary_up) {
            l->wanted = false;
        } else if (l->state == Link::State::Down) {
            l->wanted = !primary_trying;
        } else {
            l->wanted = true;  // keep a standby that is up or coming up
        }
        if (!l->wanted && l->state != Link::State::Down) {
            link_down(*l, "standby", "a primary relay is up again: leaving the standby", false);
        } else if (l->wanted && l->state == Link::State::Down && l->retry_timer == 0) {
            connect_link(*l);
        }
    }
}

void Agent::connect_link(Link& l) {
    l.retry_timer = 0;
    if (!l.wanted) {
        return;
    }
    l.resolved = resolve(l.entry.address.host, l.entry.address.ports.first);
    if (!l.resolved) {
        link_down(l, "resolve", fmt::format("cannot resolve \"{}\"", l.entry.address.host), true);
        return;
    }
    UniqueFd fd;
    const int rc = io::connect_tcp_nonblocking(*l.resolved, fd);
    if (rc != 0 && rc != -EINPROGRESS) {
        link_down(l, "connect", fmt::format("connect: {}", std::strerror(-rc)), true);
        return;
    }
    l.poll_fd = fd.get();
    l.fd = std::move(fd);
    l.state = Link::State::Connecting;
    const size_t idx = l.index;
    if (!poller().add(l.poll_fd, EPOLLOUT, [this, idx](uint32_t ev) { on_link_event(idx, ev); })) {
        link_down(l, "internal", "cannot watch the socket", true);
        return;
    }
    l.timeout_timer = poller().add_timer(
        std::chrono::duration_cast<std::chrono::milliseconds>(kConnectTimeout), [this, idx] {
            links_[idx]->timeout_timer = 0;
            link_down(*links_[idx], "timeout", "no HELLO_ACK within 10 s", true);
        });
}

void Agent::link_down(Link& l, std::string_view reason, std::string_view message, bool retry) {
    const bool was_ready = l.state == Link::State::Ready;
    if (l.poll_fd >= 0) {
        poller().remove(l.poll_fd);
        l.poll_fd = -1;
    }
    if (l.timeout_timer != 0) {
        poller().cancel_timer(l.timeout_timer);
        l.timeout_timer = 0;
    }
    if (l.peer && (reason == "shutdown" || reason == "standby" || reason == "reload")) {
        l.peer->goodbye(control::GoodbyeReason::Shutdown, message);
    }
    l.peer.reset();
    l.hs.reset();
    l.fd.reset();
    l.state = Link::State::Down;
    // Idle pooled channels die with their link: the relay forgets their
    // tokens with the control channel. Spliced sessions are not touched.
    std::vector<uint64_t> idle;
    for (const auto& [id, c] : channels_) {
        if (c->link == l.index && c->stage != Channel::Stage::Backend) {
            idle.push_back(id);
        }
    }
    for (const uint64_t id : idle) {
        close_channel(id);
    }
    const bool error = reason == "bad-key" || reason == "version" || reason == "protocol";
    if (was_ready || error || l.backoff.attempt() == 0) {
        log::event(error ? Level::Error : Level::Warn, "relay-disconnected",
                   {{"RELAY_ADDR", l.name()}, {"REASON", std::string(reason)}},
                   fmt::format("relay {}: {}{}", l.name(), message,
                               retry ? "; retrying with backoff" : ""));
    }
    if (retry && l.wanted && !stopping_) {
        const auto delay = l.backoff.next();
        const size_t idx = l.index;
        l.retry_timer = poller().add_timer(delay, [this, idx] { connect_link(*links_[idx]); });
    }
    if (!l.entry.standby && !stopping_ && reason != "reload") {
        update_wanted();
    }
}

void Agent::on_link_event(size_t index, uint32_t events) {
    Link& l = *links_[index];
    switch (l.state) {
        case Link::State::Down:
            return;
        case Link::State::Connecting: {
            if (const int err = -io::socket_error(l.fd.get()); err != 0) {
                link_down(l, "connect", fmt::format("connect: {}", std::strerror(err)), true);
                return;
            }
            const std::string verify = l.entry.address.ip ? std::string() : l.entry.address.host;
            auto s = control::TlsStream::create(*l.tls, std::move(l.fd), verify);
            if (!s) {
                link_down(l, "internal", s.error().describe(), true);
                return;
            }
            l.hs.emplace(std::move(*s));
            l.state = Link::State::Handshake;
            step_link_handshake(l);
            return;
        }
        case Link::State::Handshake:
            step_link_handshake(l);
            return;
        case Link::State::AwaitAck:
        case Link::State::Ready: {
            if ((events & EPOLLOUT) != 0 && !l.peer->flush()) {
                link_down(l, "io", "write to relay failed", true);
                return;
            }
            const auto out = l.peer->read_frames(
                [&](control::Message&& m) { return on_link_message(l, std::move(m)); });
            if (l.state == Link::State::Down) {
                return;
            }
            if (out.status == control::FramedPeer::ReadStatus::Eof) {
                link_down(l, "closed", "relay closed the control channel", true);
                return;
            }
            if (out.status == control::FramedPeer::ReadStatus::Error) {
                link_down(l, "protocol", out.error, true);
                return;
            }
            poller().modify(l.poll_fd, l.peer->poll_events());
            return;
        }
    }
}

void Agent::step_link_handshake(Link& l) {
    const auto r = l.hs->handshake();
    if (r.status == control::TlsStatus::WantRead) {
        poller().modify(l.poll_fd, EPOLLIN);
        return;
    }
    if (r.status == control::TlsStatus::WantWrite) {
        poller().modify(l.poll_fd, EPOLLOUT);
        return;
    }
    if (r.status != control::TlsStatus::Done) {
        const char* reason = r.failure == control::TlsFailure::BadKey ? "bad-key" : "protocol";
        link_down(l, reason, fmt::format("TLS handshake: {}", r.reason), true);
        return;
    }
    l.peer = std::make_unique<control::FramedPeer>(std::move(*l.hs));
    l.hs.reset();
    l.state = Link::State::AwaitAck;
    control::Hello h;
    h.agent_name = cfg_.agent.name;
    h.software_version = SP_VERSION;
    h.pool_size = static_cast<uint16_t>(std::min<uint32_t>(cfg_.agent.pool, 65535));
    h.heartbeat_ms = control::kDefaultHeartbeatMs;
    if (auto s = l.peer->send(h); !s) {
        link_down(l, "io", s.error().describe(), true);
        return;
    }
    poller().modify(l.poll_fd, l.peer->poll_events());
}

void Agent::push_config(Link& l) {
    if (auto s = l.peer->send(wire_config()); !s) {
        link_down(l, "io", s.error().describe(), true);
    }
}

bool Agent::on_link_message(Link& l, control::Message&& m) {
    using namespace control;
    if (l.state == Link::State::AwaitAck) {
        if (const auto* ack = std::get_if<HelloAck>(&m)) {
            l.state = Link::State::Ready;
            l.heartbeat_ms = std::clamp(ack->heartbeat_ms, kMinHeartbeatMs, kMaxHeartbeatMs);
            poller().cancel_timer(l.timeout_timer);
            l.timeout_timer = 0;
            l.backoff.reset();
            log::event(Level::Info, "relay-connected", {{"RELAY_ADDR", l.name()}},
                       fmt::format("connected to relay {} (software {}, protocol {})", l.name(),
                                   ack->software_version, ack->version));
            push_config(l);
            update_wanted();
            return l.state == Link::State::Ready;
        }
        if (const auto* g = std::get_if<Goodbye>(&m)) {
            link_down(l, to_string(g->reason), fmt::format("relay refused us: {}", g->message),
                      true);
            return false;
        }
        link_down(l, "protocol", "expected HELLO_ACK", true);
        return false;
    }
    if (const auto* oc = std::get_if<OpenChannels>(&m)) {
        for (const auto& t : oc->tokens) {
            dial_channel(l, t);
        }
        return true;
    }
    if (const auto* cr = std::get_if<ConfigResult>(&m)) {
        size_t ok = 0;
        for (const auto& r : cr->results) {
            if (r.status == ListenStatus::Ok) {
                ++ok;
                continue;
            }
            log::event(Level::Error, "config-rejected",
                       {{"RELAY_ADDR", l.name()},
                        {"SERVICE", r.service},
                        {"LISTEN_ADDR", r.listen},
                        {"REASON", std::string(to_string(r.status))}},
                       fmt::format("relay {} refused {} of service \"{}\": {}", l.name(), r.listen,
                                   r.service, r.message));
        }
        log::event(Level::Info, "config-applied", {{"RELAY_ADDR", l.name()}},
                   fmt::format("relay {} applied config generation {}: {} of {} listen "
                               "entries active",
                               l.name(), cr->generation, ok, cr->results.size()));
        return true;
    }
    if (std::holds_alternative<Heartbeat>(m)) {
        return true;
    }
    if (const auto* g = std::get_if<Goodbye>(&m)) {
        link_down(l, to_string(g->reason), fmt::format("relay said goodbye: {}", g->message), true);
        return false;
    }
    if (std::holds_alternative<OutboundResult>(m)) {
        return true;  // no outbound requests are sent yet
    }
    link_down(l, "protocol", fmt::format("unexpected {} from relay", to_string(type_of(m))), true);
    return false;
}

void Agent::dial_channel(Link& l, const control::Token& token) {
    if (channels_.size() >= kMaxChannels || !l.resolved || stopping_) {
        return;
    }
    UniqueFd fd;
    const int rc = io::connect_tcp_nonblocking(*l.resolved, fd);
    if (rc != 0 && rc != -EINPROGRESS) {
        return;  // the relay reissues on demand; the pool refills later
    }
    auto c = std::make_unique<Channel>();
    c->id = next_channel_++;
    c->link = l.index;
    c->token = token;
    const int raw = fd.get();
    c->fd = std::move(fd);
    const uint64_t id = c->id;
    if (!poller().add(raw, EPOLLOUT, [this, id](uint32_t ev) { on_channel_event(id, ev); })) {
        return;
    }
    c->timer =
        poller().add_timer(std::chrono::duration_cast<std::chrono::milliseconds>(kConnectTimeout),
                           [this, id] { close_channel(id); });
    channels_.emplace(id, std::move(c));
}

void Agent::close_channel(uint64_t id) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    Channel& c = *it->second;
    if (c.fd) {
        poller().remove(c.fd.get());
    }
    if (c.backend) {
        poller().remove(c.backend.get());
    }
    poller().cancel_timer(c.timer);
    channels_.erase(it);
}

void Agent::on_channel_event(uint64_t id, uint32_t /*events*/) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    Channel& c = *it->second;
    if (c.stage == Channel::Stage::Dialing) {
        if (io::socket_error(c.fd.get()) != 0) {
            close_channel(id);
            return;
        }
        const auto hello = control::encode_channel_hello(c.token);
        // A new connection's send buffer is empty: 40 bytes go out whole.
        if (::send(c.fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(hello.size())) {
            close_channel(id);
            return;
        }
        c.stage = Channel::Stage::Idle;
        poller().cancel_timer(c.timer);
        c.timer = poller().add_timer(
            std::chrono::duration_cast<std::chrono::milliseconds>(kBindingTimeout),
            [this, id] { close_channel(id); });
        poller().modify(c.fd.get(), EPOLLIN);
        return;
    }
    if (c.stage == Channel::Stage::Idle) {
        read_binding(c);
    }
}

void Agent::read_binding(Channel& c) {
    const uint64_t id = c.id;
    size_t want = control::kBindingFixedSize;
    for (int round = 0; round < 4; ++round) {
        auto r = control::decode_binding(c.buf);
        if (r.status == control::DecodeStatus::Error) {
            close_channel(id);
            return;
        }
        if (r.status == control::DecodeStatus::Ok) {
            c.binding = std::move(r.binding);
            break;
        }
        want = r.needed;
        uint8_t tmp[control::kMaxBindingPayload + control::kBindingFixedSize];
        // Exactly up to the header's end: client bytes stay in the socket
        // for the splice pump.
        const ssize_t n = ::recv(c.fd.get(), tmp, want - c.buf.size(), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            close_channel(id);  // relay dropped an idle channel
            return;
        }
        if (n < 0) {
            return;
        }
        c.buf.insert(c.buf.end(), tmp, tmp + n);
    }
    if (c.binding.service.empty()) {
        return;  // still incomplete
    }
    poller().remove(c.fd.get());
    poller().cancel_timer(c.timer);
    c.timer = 0;
    c.stage = Channel::Stage::Backend;
    auto client = SocketAddress::parse(c.binding.client_addr);
    auto listen = SocketAddress::parse(c.binding.listen_addr);
    const auto sel = selectors_.find(c.binding.service);
    if (!client || !listen || sel == selectors_.end()) {
        log::event(
            Level::Warn, "backend-failed",
            {{"SESSION_ID", fmt::format("{:016x}", c.binding.session_id)},
             {"SERVICE", c.binding.service},
             {"REASON", "unknown-service"}},
            fmt::format("relay bound a channel to unknown service \"{}\"", c.binding.service));
        close_channel(id);
        return;
    }
    c.client = *client;
    c.listen = *listen;
    c.target = sel->second->pick(client->ip(), listen->port(), BackendSelector::Clock::now());
    if (!c.target) {
        backend_failed(c, EHOSTUNREACH);
        return;
    }
    c.tried = 1;
    connect_backend(c);
}

void Agent::connect_backend(Channel& c) {
    const uint64_t id = c.id;
    for (;;) {
        c.backend_addr = c.target->to_string();
        const auto addr = resolve(c.target->host, c.target->port);
        int rc = -EHOSTUNREACH;
        UniqueFd fd;
        if (addr) {
            rc = io::connect_tcp_nonblocking(*addr, fd);
        }
        if (rc == 0 || rc == -EINPROGRESS) {
            const int raw = fd.get();
            c.backend = std::move(fd);
            if (!poller().add(raw, EPOLLOUT,
                              [this, id](uint32_t ev) { on_backend_event(id, ev); })) {
                backend_failed(c, EMFILE);
                return;
            }
            c.timer = poller().add_timer(
                std::chrono::duration_cast<std::chrono::milliseconds>(kBackendConnectTimeout),
                [this, id] {
                    const auto it = channels_.find(id);
                    if (it != channels_.end()) {
                        it->second->timer = 0;
                        poller().remove(it->second->backend.get());
                        it->second->backend.reset();
                        backend_failed(*it->second, ETIMEDOUT);
                    }
                });
            return;
        }
        // Immediate failure: mark it and try the next backend right away.
        selectors_.at(c.binding.service)
            ->mark_failed(c.target->index, BackendSelector::Clock::now());
        auto next =
            selectors_.at(c.binding.service)->next_after(*c.target, c.listen->port(), c.tried);
        if (!next) {
            backend_failed(c, -rc);
            return;
        }
        c.target = next;
        ++c.tried;
    }
}

void Agent::on_backend_event(uint64_t id, uint32_t /*events*/) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    Channel& c = *it->second;
    poller().remove(c.backend.get());
    poller().cancel_timer(c.timer);
    c.timer = 0;
    if (const int err = -io::socket_error(c.backend.get()); err != 0) {
        c.backend.reset();
        backend_failed(c, err);
        return;
    }
    start_session(c);
}

void Agent::backend_failed(Channel& c, int err) {
    const auto sel = selectors_.find(c.binding.service);
    if (sel != selectors_.end() && c.target) {
        sel->second->mark_failed(c.target->index, BackendSelector::Clock::now());
        if (auto next = sel->second->next_after(*c.target, c.listen->port(), c.tried); next) {
            c.target = next;
            ++c.tried;
            connect_backend(c);
            return;
        }
    }
    const std::string sid = fmt::format("{:016x}", c.binding.session_id);
    log::event(Level::Warn, "backend-failed",
               {{"SESSION_ID", sid},
                {"SERVICE", c.binding.service},
                {"CLIENT_ADDR", c.client ? c.client->ip().to_string() : std::string()},
                {"BACKEND_ADDR", c.backend_addr},
                {"REASON", std::strerror(err)}},
               fmt::format("session {}: no backend of \"{}\" reachable ({}); closing the client",
                           sid, c.binding.service, std::strerror(err)));
    Link& l = *links_[c.link];
    if (l.state == Link::State::Ready) {
        (void)l.peer->send(control::BackendFailed{c.binding.session_id, err, c.backend_addr});
        poller().modify(l.poll_fd, l.peer->poll_events());
    }
    close_channel(c.id);  // the relay sees the channel close and closes the client
}

void Agent::start_session(Channel& c) {
    const auto svc = std::find_if(cfg_.services.begin(), cfg_.services.end(),
                                  [&](const auto& s) { return s.name == c.binding.service; });
    if (svc != cfg_.services.end() && svc->proxy_protocol != config::ProxyProtocol::None) {
        const auto header = svc->proxy_protocol == config::ProxyProtocol::V1
                                ? proxy_v1(*c.client, *c.listen)
                                : proxy_v2(*c.client, *c.listen);
        if (::send(c.backend.get(), header.data(), header.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(header.size())) {
            c.backend.reset();
            backend_failed(c, EPIPE);
            return;
        }
    }
    const std::string sid = fmt::format("{:016x}", c.binding.session_id);
    log::event(Level::Info, "session-open",
               {{"SESSION_ID", sid},
                {"SERVICE", c.binding.service},
                {"CLIENT_ADDR", c.client->ip().to_string()},
                {"CLIENT_PORT", std::to_string(c.client->port())},
                {"LISTEN_ADDR", c.binding.listen_addr},
                {"BACKEND_ADDR", c.backend_addr},
                {"RELAY_ADDR", links_[c.link]->name()}},
               fmt::format("session {} from {} to {} via {}", sid, c.binding.client_addr,
                           c.backend_addr, links_[c.link]->name()));
    ++sessions_;
    auto& w = workers()[next_worker_++ % workers().size()];
    auto channel = std::make_shared<UniqueFd>(std::move(c.fd));
    auto backend = std::make_shared<UniqueFd>(std::move(c.backend));
    // session-close repeats every field of session-open, so either entry
    // alone answers who, where and through which relay.
    w->post([this, channel, backend, sid, service = c.binding.service, client = *c.client,
             listen_addr = c.binding.listen_addr, backend_addr = c.backend_addr,
             relay_addr = links_[c.link]->name()](io::Worker& wk) {
        wk.start_session(
            std::move(*channel), std::move(*backend),
            [this, sid, service, client, listen_addr, backend_addr, relay_addr](
                io::Worker&, io::SessionId, const io::SessionEnd& end) {
                --sessions_;
                log::event(Level::Info, "session-close",
                           {{"SESSION_ID", sid},
                            {"SERVICE", service},
                            {"CLIENT_ADDR", client.ip().to_string()},
                            {"CLIENT_PORT", std::to_string(client.port())},
                            {"LISTEN_ADDR", listen_addr},
                            {"BACKEND_ADDR", backend_addr},
                            {"RELAY_ADDR", relay_addr},
                            {"BYTES_UP", std::to_string(end.bytes_up)},
                            {"BYTES_DOWN", std::to_string(end.bytes_down)},
                            {"DURATION_MS", std::to_string(end.duration.count())},
                            {"REASON", std::string(end.reason)}},
                           fmt::format("session {} closed ({}): {} bytes up, {} down", sid,
                                       end.reason, end.bytes_up, end.bytes_down));
            },
            0);
    });
    close_channel(c.id);  // fds moved into the worker; forget the bookkeeping
}

void Agent::tick() {
    const auto now = Poller::Clock::now();
    for (auto& l : links_) {
        if (l->state != Link::State::Ready) {
            continue;
        }
        const auto hb = std::chrono::milliseconds(l->heartbeat_ms);
        if (now - l->peer->last_rx() > hb * control::kDeadAfterIntervals) {
            link_down(*l, "timeout", "relay silent for three heartbeat intervals", true);
            continue;
        }
        if (now - l->peer->last_tx() >= hb) {
            const auto ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
            (void)l->peer->send(control::Heartbeat{static_cast<uint64_t>(ms.count())});
            poller().modify(l->poll_fd, l->peer->poll_events());
        }
    }
    const size_t up =
        static_cast<size_t>(std::count_if(links_.begin(), links_.end(), [](const auto& l) {
            return l->state == Link::State::Ready;
        }));
    const std::string status =
        fmt::format("{} of {} relays up, {} sessions", up, links_.size(), sessions_.load());
    daemon_->status(status);
}

void Agent::reload() {
    notify::reloading();
    log::event(Level::Info, "reload", {}, "reloading configuration");
    auto fresh = config::load_agent_config(cfg_.path);
    if (!fresh) {
        log::event(Level::Error, "reload-failed", {{"REASON", fresh.error().describe()}},
                   fmt::format("reload failed, keeping the running configuration: {}",
                               fresh.error().describe()));
        notify::ready();
        return;
    }
    const auto relay_key = [](const config::RelayEntry& e) {
        return fmt::format("{}|{}|{}|{}|{}|{}", e.address.to_string(), e.key, e.certificate,
                           e.private_key, e.relay_ca, e.standby);
    };
    bool relays_same = fresh->relays.size() == cfg_.relays.size();
    for (size_t i = 0; relays_same && i < cfg_.relays.size(); ++i) {
        relays_same = relay_key(fresh->relays[i]) == relay_key(cfg_.relays[i]);
    }
    config::AgentConfig old = std::move(cfg_);
    cfg_ = std::move(*fresh);
    cfg_.agent.threads = old.agent.threads;  // workers are not rebuilt
    cfg_.agent.data_path = old.agent.data_path;
    if (!relays_same) {
        // Key files may have changed too: rebuild every link. Their sessions
        // are in the workers and survive; only control channels restart.
        for (auto& l : links_) {
            l->wanted = false;
            if (l->retry_timer != 0) {
                poller().cancel_timer(l->retry_timer);
                l->retry_timer = 0;
            }
            link_down(*l, "reload", "relay list changed by reload", false);
        }
        if (auto r = build_links(); !r) {
            log::event(Level::Error, "reload-failed", {{"REASON", r.error().describe()}},
                       fmt::format("reload: {}; relays stay disconnected until fixed",
                                   r.error().describe()));
        }
    }
    build_selectors();
    ++generation_;
    for (auto& l : links_) {
        if (l->state == Link::State::Ready) {
            push_config(*l);
        }
    }
    update_wanted();
    log::event(Level::Info, "config-applied", {},
               fmt::format("agent configuration reloaded: {} services, generation {}",
                           cfg_.services.size(), generation_));
    notify::ready();
}

void Agent::begin_drain() {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    log::event(Level::Info, "stopping", {},
               fmt::format("stopping: draining {} sessions for up to 30 s", sessions_.load()));
    for (auto& l : links_) {
        l->wanted = false;
        if (l->retry_timer != 0) {
            poller().cancel_timer(l->retry_timer);
            l->retry_timer = 0;
        }
        if (l->state != Link::State::Down) {
            link_down(*l, "shutdown", "agent stopping", false);
        }
    }
    std::vector<uint64_t> ids;
    for (const auto& [id, c] : channels_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        close_channel(id);
    }
    daemon_->begin_drain(std::chrono::duration_cast<std::chrono::seconds>(kDrainTimeout));
}

int Agent::run() {
    log::event(Level::Info, "started", {{"AGENT", cfg_.agent.name}},
               fmt::format("sallyport-agent {} \"{}\" started with {} workers, {} relays, {} "
                           "services",
                           SP_VERSION, cfg_.agent.name, workers().size(), links_.size(),
                           cfg_.services.size()));
    update_wanted();
    const bool forced = daemon_->run();
    log::event(Level::Info, "stopping", {},
               forced ? "drain timeout reached: remaining sessions closed; exiting"
                      : "all sessions drained; exiting");
    return 0;
}

}  // namespace sp::agent
