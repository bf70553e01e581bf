// SPDX-License-Identifier: Apache-2.0
#include "agent/shard.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

#include "agent/proxy_header.hpp"
#include "agent/session_log.hpp"
#include "base/event.hpp"
#include "io/net.hpp"

namespace sp::agent {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds kDialTimeout = 10s;  // TCP connect to the relay
// Once a binding header has started, the rest is in the same segment or
// the next: a relay that stalls mid-header is not pairing a client.
constexpr std::chrono::milliseconds kHeaderTimeout = 10s;
constexpr std::chrono::milliseconds kBackendConnectTimeout = 5s;  // per backend attempt
constexpr std::chrono::seconds kBackendFailHold = 5s;   // a refusing backend is skipped this long
constexpr std::chrono::milliseconds kResolveWait = 5s;  // a backend name not resolved yet
constexpr uint32_t kLogBurst = 5;                       // lines per relay and reason ...
constexpr auto kLogWindow = 10s;                        // ... per window

}  // namespace

struct Shard::Channel {
    enum class Stage : uint8_t { Dialling, Waiting, Reading, Resolving, Connecting };
    Stage stage = Stage::Dialling;
    LinkId link{};
    std::string relay_name;
    bool holds_slot = true;  // counted in its link's budget until bound
    UniqueFd fd;             // the data channel
    uint64_t wait = 0;       // wait_fd in flight
    uint64_t timer = 0;      // Resolving: how long to wait for the name
    control::Token token{};  // Dialling only
    std::vector<uint8_t> buf;
    SessionInfo info;  // from the binding header on
    SocketAddress listen;
    UniqueFd backend;
    std::optional<BackendTarget> target;
    size_t tried = 0;
    std::vector<std::pair<std::string, int>> failed;  // backends that refused, with errno
};

Shard::Shard(unsigned index, ShardHost& host) : index_(index), host_(host) {}

Shard::~Shard() = default;

void Shard::set_services(std::shared_ptr<const ServiceTable> table) {
    services_.clear();
    for (const auto& s : table->services) {
        services_.emplace(
            s.name, Service{BackendSelector(s.listen, s.backend, std::chrono::seconds(s.affinity_s),
                                            kBackendFailHold),
                            s.proxy_protocol});
    }
    table_ = std::move(table);
}

void Shard::mark_down(uint64_t gen, const std::string& service, size_t index) {
    if (!table_ || table_->generation != gen) {
        return;  // the mark is for a configuration since replaced
    }
    if (const auto it = services_.find(service); it != services_.end()) {
        it->second.selector.mark_failed(index, Clock::now());
    }
}

void Shard::dial(io::Worker& w, const LinkRoute& route, std::vector<control::Token> tokens) {
    const auto now = Clock::now();
    auto [it, fresh] = links_.try_emplace(route.id, Link{route, ChannelBudget(route.limits, now)});
    Link& l = it->second;
    if (!fresh) {
        l.route = route;  // the relay may have moved (DNS), the pool changed by reload
        l.budget.set_limits(route.limits);
    }
    size_t refused = 0;
    auto why = ChannelBudget::Verdict::Dial;
    int dial_err = 0;
    for (const auto& t : tokens) {
        if (const auto v = l.budget.take(now); v != ChannelBudget::Verdict::Dial) {
            ++refused;
            why = v;
            continue;
        }
        UniqueFd fd;
        const int rc = io::connect_tcp_nonblocking(l.route.relay, fd);
        if (rc != 0 && rc != -EINPROGRESS) {
            l.budget.dropped();
            dial_err = rc;  // the relay re-issues on demand; the pool refills later
            continue;
        }
        auto c = std::make_unique<Channel>();
        c->link = route.id;
        c->relay_name = route.relay_name;
        c->token = t;
        c->fd = std::move(fd);
        const uint64_t id = next_channel_++;
        c->wait = w.wait_fd(c->fd.get(), POLLOUT, kDialTimeout,
                            [this, id](io::Worker& wk, int res) { on_dialled(wk, id, res); });
        channels_.emplace(id, std::move(c));
    }
    if (refused > 0) {
        limited_log("resource-limit", l.route.relay_name, to_string(why),
                    fmt::format("relay {} asked for {} more data channels than its {} allows "
                                "(worker {}); their tokens are dropped",
                                l.route.relay_name, refused,
                                why == ChannelBudget::Verdict::OverCap ? "cap" : "rate", index_));
    }
    if (dial_err != 0) {
        limited_log("resource-limit", l.route.relay_name, errno_reason(dial_err),
                    fmt::format("cannot dial a data channel to relay {}: {}", l.route.relay_name,
                                errno_reason(dial_err)));
    }
}

void Shard::on_dialled(io::Worker& w, uint64_t id, int res) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    Channel& c = *it->second;
    c.wait = 0;
    if (res < 0 || io::socket_error(c.fd.get()) != 0) {
        drop(w, id);
        return;
    }
    const auto hello = control::encode_channel_hello(c.token);
    // A new connection's send buffer is empty: 40 bytes go out whole.
    if (::send(c.fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
        static_cast<ssize_t>(hello.size())) {
        drop(w, id);
        return;
    }
    c.token = {};
    c.stage = Channel::Stage::Waiting;
    // Pooled: it may wait for a client for days, so no deadline and no timer.
    c.wait = w.wait_fd(c.fd.get(), POLLIN, io::kNoTimeout,
                       [this, id](io::Worker& wk, int r) { on_readable(wk, id, r); });
}

void Shard::on_readable(io::Worker& w, uint64_t id, int res) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    it->second->wait = 0;
    if (res < 0) {
        drop(w, id);  // header stalled (-ETIMEDOUT) or the worker stops
        return;
    }
    read_binding(w, id, *it->second);
}

void Shard::read_binding(io::Worker& w, uint64_t id, Channel& c) {
    const auto known = [this](std::string_view s) { return services_.find(s) != services_.end(); };
    for (;;) {
        BindingVerdict v = judge_binding(c.buf, known);
        if (v.kind == BindingVerdict::Kind::Bound) {
            bind(w, id, c, std::move(v));
            return;
        }
        if (v.kind == BindingVerdict::Kind::Refused || v.need <= c.buf.size()) {
            limited_log("backend-failed", c.relay_name, to_string(v.refusal), v.detail,
                        v.binding.session_id != 0 ? &v.binding : nullptr);
            drop(w, id);  // the relay sees the close and closes its client
            return;
        }
        // Exactly up to the header's end: client bytes stay in the socket
        // for the splice pump.
        uint8_t tmp[control::kBindingFixedSize + control::kMaxBindingPayload];
        const ssize_t n = ::recv(c.fd.get(), tmp, v.need - c.buf.size(), MSG_DONTWAIT);
        if (n > 0) {
            c.buf.insert(c.buf.end(), tmp, tmp + n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            // Every way out of this loop closes the channel or waits on the
            // ring for new bytes: a header can never make it spin.
            const bool started = !c.buf.empty();
            c.stage = started ? Channel::Stage::Reading : Channel::Stage::Waiting;
            c.wait = w.wait_fd(c.fd.get(), POLLIN, started ? kHeaderTimeout : io::kNoTimeout,
                               [this, id](io::Worker& wk, int r) { on_readable(wk, id, r); });
            return;
        }
        drop(w, id);  // EOF or an error: the relay closed an idle channel
        return;
    }
}

void Shard::bind(io::Worker& w, uint64_t id, Channel& c, BindingVerdict v) {
    if (const auto l = links_.find(c.link); l != links_.end() && c.holds_slot) {
        l->second.budget.bound();
    }
    c.holds_slot = false;
    c.buf = {};
    c.info = SessionInfo{v.binding.session_id,
                         std::move(v.binding.service),
                         *v.client,
                         std::move(v.binding.listen_addr),
                         {},
                         c.relay_name};
    c.listen = *v.listen;
    auto& svc = services_.find(c.info.service)->second;  // judge_binding checked it
    c.target = svc.selector.pick(c.info.client.ip(), c.listen.port(), Clock::now());
    if (!c.target) {
        session_failed(w, id, c, EHOSTUNREACH);  // the listener port maps to no backend
        return;
    }
    c.tried = 1;
    connect_backend(w, id, c);
}

void Shard::connect_backend(io::Worker& w, uint64_t id, Channel& c) {
    std::optional<SocketAddress> addr;
    int err = EHOSTUNREACH;
    if (auto ip = IpAddress::parse(c.target->host)) {
        addr = SocketAddress(*ip, c.target->port);
    } else if (const auto a = addresses_.find(c.target->host); a == addresses_.end()) {
        // Not resolved yet: the resolver answers every shard.
        host_.resolve(c.target->host);
        resolving_[c.target->host].push_back(id);
        c.stage = Channel::Stage::Resolving;
        c.timer = w.add_timer(kResolveWait, [this, id](io::Worker& wk) {
            const auto it = channels_.find(id);
            if (it != channels_.end() && it->second->stage == Channel::Stage::Resolving) {
                Channel& ch = *it->second;
                ch.timer = 0;
                std::erase(resolving_[ch.target->host], id);
                backend_attempt_failed(wk, id, ch, ETIMEDOUT);
            }
        });
        return;
    } else if (a->second) {
        addr = SocketAddress(*a->second, c.target->port);
    }
    if (addr) {
        UniqueFd fd;
        const int rc = io::connect_tcp_nonblocking(*addr, fd);
        if (rc == 0 || rc == -EINPROGRESS) {
            c.backend = std::move(fd);
            c.stage = Channel::Stage::Connecting;
            c.wait = w.wait_fd(c.backend.get(), POLLOUT, kBackendConnectTimeout,
                               [this, id](io::Worker& wk, int r) { on_backend(wk, id, r); });
            return;
        }
        err = -rc;
    }
    backend_attempt_failed(w, id, c, err);
}

void Shard::set_address(io::Worker& w, const std::string& host, std::optional<IpAddress> ip) {
    addresses_[host] = ip;
    auto waiting = resolving_.extract(host);
    if (waiting.empty()) {
        return;
    }
    for (const uint64_t id : waiting.mapped()) {
        const auto it = channels_.find(id);
        if (it == channels_.end() || it->second->stage != Channel::Stage::Resolving) {
            continue;
        }
        Channel& c = *it->second;
        w.cancel_timer(c.timer);
        c.timer = 0;
        connect_backend(w, id, c);
    }
}

void Shard::on_backend(io::Worker& w, uint64_t id, int res) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    Channel& c = *it->second;
    c.wait = 0;
    const int err = res < 0 ? -res : -io::socket_error(c.backend.get());
    if (err != 0) {
        c.backend.reset();
        backend_attempt_failed(w, id, c, err);
        return;
    }
    start_session(w, id, c);
}

void Shard::backend_attempt_failed(io::Worker& w, uint64_t id, Channel& c, int err) {
    c.failed.emplace_back(c.target->to_string(), err);
    const auto svc = services_.find(c.info.service);
    if (svc == services_.end()) {
        session_failed(w, id, c, err);  // withdrawn by a reload meanwhile
        return;
    }
    svc->second.selector.mark_failed(c.target->index, Clock::now());
    host_.backend_down(table_->generation, c.info.service, c.target->index);
    auto next = svc->second.selector.next_after(*c.target, c.listen.port(), c.tried);
    if (!next) {
        session_failed(w, id, c, err);
        return;
    }
    c.target = std::move(next);
    ++c.tried;
    connect_backend(w, id, c);
}

void Shard::session_failed(io::Worker& w, uint64_t id, Channel& c, int err) {
    for (const auto& [addr, e] : c.failed) {
        log_backend_failed(c.info, addr, e, {});
    }
    if (c.failed.empty()) {
        log_backend_failed(c.info, {}, err, {});
    }
    const std::string last = c.failed.empty() ? std::string() : c.failed.back().first;
    host_.backend_failed(c.link, control::BackendFailed{c.info.session_id, std::abs(err), last});
    drop(w, id);  // the relay sees the channel close and closes the client
}

void Shard::start_session(io::Worker& w, uint64_t id, Channel& c) {
    const auto svc = services_.find(c.info.service);
    if (svc != services_.end() && svc->second.proxy != config::ProxyProtocol::None) {
        const auto header = svc->second.proxy == config::ProxyProtocol::V1
                                ? proxy_v1(c.info.client, c.listen)
                                : proxy_v2(c.info.client, c.listen);
        // Just connected: the send buffer is empty and takes it whole.
        if (::send(c.backend.get(), header.data(), header.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
            static_cast<ssize_t>(header.size())) {
            c.backend.reset();
            backend_attempt_failed(w, id, c, EPIPE);
            return;
        }
    }
    c.info.backend_addr = c.target->to_string();
    for (const auto& [addr, e] : c.failed) {
        log_backend_failed(c.info, addr, e, c.info.backend_addr);
    }
    log_session_open(c.info);
    host_.session_count(+1);
    w.start_session(
        std::move(c.fd), std::move(c.backend),
        [this, info = std::move(c.info)](io::Worker&, io::SessionId, const io::SessionEnd& end) {
            log_session_close(info, end);
            host_.session_count(-1);
        },
        0);
    channels_.erase(id);
}

void Shard::drop(io::Worker& w, uint64_t id) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    Channel& c = *it->second;
    if (c.wait != 0) {
        w.cancel_wait(c.wait);  // before the fd closes with the channel
    }
    if (c.timer != 0) {
        w.cancel_timer(c.timer);
        std::erase(resolving_[c.target->host], id);
    }
    if (c.holds_slot) {
        if (const auto l = links_.find(c.link); l != links_.end()) {
            l->second.budget.dropped();
        }
    }
    channels_.erase(it);
}

void Shard::drop_link(io::Worker& w, LinkId link) {
    std::vector<uint64_t> ids;
    for (const auto& [id, c] : channels_) {
        if (c->link == link && c->holds_slot) {
            ids.push_back(id);
        }
    }
    for (const uint64_t id : ids) {
        drop(w, id);
    }
    links_.erase(link);
}

void Shard::close_all(io::Worker& w) {
    std::vector<uint64_t> ids;
    ids.reserve(channels_.size());
    for (const auto& [id, c] : channels_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        drop(w, id);
    }
}

void Shard::limited_log(std::string_view event, const std::string& relay, std::string_view reason,
                        const std::string& detail, const control::Binding* b) {
    auto& lim = log_limit_[relay + '|' + std::string(reason)];
    const auto now = Clock::now();
    if (now - lim.window >= kLogWindow) {
        lim.window = now;
        lim.sent = 0;
    }
    if (lim.sent >= kLogBurst) {
        ++lim.held;
        return;
    }
    ++lim.sent;
    const uint64_t held = std::exchange(lim.held, 0);
    const std::string note = held > 0 ? fmt::format(" ({} similar lines not logged)", held) : "";
    log::event(log::Level::Warn, event,
               {{"RELAY_ADDR", relay},
                {"REASON", std::string(reason)},
                {"SESSION_ID", b != nullptr ? fmt::format("{:016x}", b->session_id) : ""},
                {"SERVICE", b != nullptr ? b->service.substr(0, control::kMaxName) : ""},
                {"SUPPRESSED", held > 0 ? std::to_string(held) : ""}},
               detail + note);
}

}  // namespace sp::agent
