// SPDX-License-Identifier: Apache-2.0
#include "agent/outbound_shard.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <variant>

#include <fmt/format.h>

#include "base/events.hpp"
#include "io/net.hpp"
#include "outbound/http_connect.hpp"
#include "outbound/socks5.hpp"

namespace sp::agent {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace f = log::f;

namespace {

// A caller has this long from accept to a complete request: a SOCKS5 or
// CONNECT head is one or two segments, so only an idle or hostile caller
// reaches it.
constexpr std::chrono::milliseconds kHandshakeTimeout = 10s;
// The relay answers within its own connect timeout; this only bounds a
// relay that never answers, so the caller is told rather than left hanging.
constexpr std::chrono::milliseconds kAnswerTimeout = 30s;
// Dialling the relay's data port and waiting for its binding header.
constexpr std::chrono::milliseconds kChannelTimeout = 10s;
constexpr size_t kReadChunk = 512;

std::string hex_id(uint64_t id) {
    return fmt::format("{:016x}", id);
}

void send_all_or_nothing(int fd, std::span<const uint8_t> bytes) {
    if (!bytes.empty()) {
        // A reply is a few bytes on an empty send buffer: it goes out whole,
        // or the caller is gone and the close tells it the rest.
        (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

std::span<const uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

bool OutboundRules::admits(const IpAddress& ip) const noexcept {
    for (const auto& c : deny_clients) {
        if (c.contains(ip)) {
            return false;
        }
    }
    if (allow_clients.empty()) {
        return true;
    }
    for (const auto& c : allow_clients) {
        if (c.contains(ip)) {
            return true;
        }
    }
    return false;
}

struct OutboundShard::Conn {
    enum class Stage : uint8_t { Handshake, Asking, Dialling, Binding };
    ProxyKind kind = ProxyKind::Socks5;
    Stage stage = Stage::Handshake;
    UniqueFd client;
    SocketAddress peer;
    std::shared_ptr<const OutboundRules> rules;  // keeps the users the parser reads alive
    std::variant<outbound::Socks5Server, outbound::HttpConnectParser> parser;
    bool refused = false;    // outside allow_clients: answered once the request is read
    bool requested = false;  // the request is complete (a reply is expected)
    bool counted = false;    // the relay accepted: the link's load holds this one
    uint64_t wait = 0;
    uint64_t timer = 0;
    outbound::Target target;
    std::vector<uint8_t> early;
    LinkId link{};
    std::string relay_name;
    UniqueFd channel;
    control::Token token{};
    std::vector<uint8_t> header;
    Clock::time_point began = Clock::now();

    Conn(ProxyKind k, std::shared_ptr<const OutboundRules> r)
        : kind(k),
          rules(std::move(r)),
          parser(k == ProxyKind::Socks5
                     ? std::variant<outbound::Socks5Server, outbound::HttpConnectParser>(
                           std::in_place_index<0>, &rules->users)
                     : std::variant<outbound::Socks5Server, outbound::HttpConnectParser>(
                           std::in_place_index<1>, &rules->users)) {}
};

OutboundShard::OutboundShard(unsigned index, OutboundHost& host) : index_(index), host_(host) {}

OutboundShard::~OutboundShard() = default;

void OutboundShard::add_listener(io::Worker& w, UniqueFd fd, ProxyKind kind,
                                 const SocketAddress& addr) {
    if (closed_) {
        return;
    }
    listeners_.push_back(w.add_listener(
        std::move(fd),
        [this, kind](io::Worker& wk, UniqueFd c, const SocketAddress& peer, const SocketAddress&) {
            on_accept(wk, std::move(c), kind, peer);
        },
        [this, addr](io::Worker&, int err, bool paused) {
            if (reject_log_.allow("accept " + addr.to_string(), Clock::now()) < 0) {
                return;
            }
            log::event(log::Ev::ResourceLimit,
                       {{f::kListenAddr, addr.to_string()}, {f::kReason, log::errno_reason(err)}},
                       fmt::format("forward proxy on {} (worker {}): accept failed: {}{}",
                                   addr.to_string(), index_, log::errno_reason(err),
                                   paused ? "; retrying" : ""));
        }));
}

void OutboundShard::on_accept(io::Worker& w, UniqueFd fd, ProxyKind kind,
                              const SocketAddress& peer) {
    if (closed_) {
        return;
    }
    const uint64_t id = next_++;
    auto c = std::make_unique<Conn>(kind, rules_);
    c->client = std::move(fd);
    c->peer = peer;
    // A caller outside allow_clients still gets its request read, so the
    // answer is a reply it understands (SOCKS5 0x02, HTTP 403) rather than
    // a reset.
    c->refused = !c->rules->admits(peer.ip());
    Conn& conn = *c;
    conns_.emplace(id, std::move(c));
    arm_deadline(w, id, conn, kHandshakeTimeout);
    conn.wait = w.wait_fd(conn.client.get(), POLLIN, io::kNoTimeout,
                          [this, id](io::Worker& wk, int r) { on_client_readable(wk, id, r); });
}

void OutboundShard::arm_deadline(io::Worker& w, uint64_t id, Conn& c, std::chrono::milliseconds d) {
    if (c.timer != 0) {
        w.cancel_timer(c.timer);
    }
    c.timer = w.add_timer(d, [this, id](io::Worker& wk) {
        const auto it = conns_.find(id);
        if (it == conns_.end()) {
            return;
        }
        Conn& conn = *it->second;
        conn.timer = 0;
        if (conn.stage == Conn::Stage::Handshake) {
            refuse(
                wk, id, outbound::Failure::BadRequest, 0,
                fmt::format("no complete request within {} s", kHandshakeTimeout.count() / 1000));
        } else {
            refuse(
                wk, id, outbound::Failure::Timeout, 0,
                fmt::format("the relay did not answer within {} s", kAnswerTimeout.count() / 1000));
        }
    });
}

void OutboundShard::on_client_readable(io::Worker& w, uint64_t id, int res) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    Conn& c = *it->second;
    c.wait = 0;
    if (res < 0) {
        drop(w, id);
        return;
    }
    std::array<uint8_t, kReadChunk> buf{};
    const ssize_t n = ::recv(c.client.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c.wait = w.wait_fd(c.client.get(), POLLIN, io::kNoTimeout,
                           [this, id](io::Worker& wk, int r) { on_client_readable(wk, id, r); });
        return;
    }
    if (n <= 0) {
        drop(w, id);  // the caller left before finishing its request: nobody to answer
        return;
    }
    const std::span<const uint8_t> in(buf.data(), static_cast<size_t>(n));
    bool connect = false;
    bool failed = false;
    std::string_view why;
    if (auto* s = std::get_if<outbound::Socks5Server>(&c.parser)) {
        const auto step = s->feed(in);
        send_all_or_nothing(c.client.get(), step.send);
        connect = step.status == outbound::Socks5Server::Status::Connect;
        failed = step.status == outbound::Socks5Server::Status::Failed;
        if (connect) {
            c.target = s->target();
            c.early.assign(s->early().begin(), s->early().end());
        }
        why = s->why();
        if (failed) {
            c.target = s->target();
        }
    } else {
        auto& h = std::get<outbound::HttpConnectParser>(c.parser);
        const auto step = h.feed(in);
        send_all_or_nothing(c.client.get(), as_bytes(step.response));
        connect = step.status == outbound::HttpConnectParser::Status::Connect;
        failed = step.status == outbound::HttpConnectParser::Status::Failed;
        c.target = h.target();
        if (connect) {
            c.early.assign(h.early().begin(), h.early().end());
        }
        why = h.why();
    }
    if (failed) {
        // The parser's own answer went out above; only the event is left.
        refuse(w, id, outbound::Failure::BadRequest, 0, why);
        return;
    }
    if (connect) {
        handshake_done(w, id, c);
        return;
    }
    c.wait = w.wait_fd(c.client.get(), POLLIN, io::kNoTimeout,
                       [this, id](io::Worker& wk, int r) { on_client_readable(wk, id, r); });
}

void OutboundShard::handshake_done(io::Worker& w, uint64_t id, Conn& c) {
    c.requested = true;
    if (c.refused) {
        refuse(w, id, outbound::Failure::NotAllowed, 0,
               fmt::format("caller {} is not in [outbound] allow_clients (or is in "
                           "deny_clients)",
                           c.peer.ip().to_string()));
        return;
    }
    c.stage = Conn::Stage::Asking;
    arm_deadline(w, id, c, kAnswerTimeout);
    host_.outbound_request(OutboundTicket{index_, id}, c.target);
}

void OutboundShard::on_answer(io::Worker& w, OutboundAnswer a) {
    const auto it = conns_.find(a.ticket);
    if (it == conns_.end() || it->second->stage != Conn::Stage::Asking) {
        if (!a.failure) {
            host_.outbound_ended(a.link);  // the caller left meanwhile
        }
        return;
    }
    const uint64_t id = a.ticket;
    Conn& c = *it->second;
    c.stage = Conn::Stage::Dialling;  // no longer asking: nothing to cancel
    c.relay_name = a.relay_name;
    if (a.failure) {
        refuse(w, id, *a.failure, a.error,
               *a.failure == outbound::Failure::NoRelay
                   ? std::string("no relay is up to carry the request")
                   : fmt::format("the relay refused: {}{}", outbound::to_string(*a.failure),
                                 a.error != 0 ? " (" + log::errno_reason(a.error) + ")" : ""));
        return;
    }
    c.counted = true;
    c.link = a.link;
    c.token = a.token;
    const int rc = io::connect_tcp_nonblocking(a.relay, c.channel);
    if (rc != 0 && rc != -EINPROGRESS) {
        refuse(w, id, outbound::Failure::NoRelay, 0,
               fmt::format("cannot dial a data channel to relay {}: {}", a.relay_name,
                           log::errno_reason(rc)));
        return;
    }
    c.wait = w.wait_fd(c.channel.get(), POLLOUT, kChannelTimeout,
                       [this, id](io::Worker& wk, int r) { on_dialled(wk, id, r); });
}

void OutboundShard::on_dialled(io::Worker& w, uint64_t id, int res) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    Conn& c = *it->second;
    c.wait = 0;
    const int err = res < 0 ? res : io::socket_error(c.channel.get());
    if (err != 0) {
        refuse(w, id, outbound::Failure::NoRelay, 0,
               fmt::format("cannot dial a data channel to relay {}: {}", c.relay_name,
                           log::errno_reason(err)));
        return;
    }
    const auto hello = control::encode_channel_hello(c.token);
    c.token = {};
    if (::send(c.channel.get(), hello.data(), hello.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
        static_cast<ssize_t>(hello.size())) {
        refuse(w, id, outbound::Failure::NoRelay, 0,
               fmt::format("relay {} closed the data channel", c.relay_name));
        return;
    }
    c.stage = Conn::Stage::Binding;
    c.wait = w.wait_fd(c.channel.get(), POLLIN, kChannelTimeout,
                       [this, id](io::Worker& wk, int r) { on_channel_readable(wk, id, r); });
}

void OutboundShard::on_channel_readable(io::Worker& w, uint64_t id, int res) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    Conn& c = *it->second;
    c.wait = 0;
    if (res < 0) {
        refuse(w, id, res == -ETIMEDOUT ? outbound::Failure::Timeout : outbound::Failure::NoRelay,
               0, fmt::format("no binding header from relay {}", c.relay_name));
        return;
    }
    // A bounded loop: each turn reads bytes or leaves.
    for (;;) {
        const auto r = control::decode_binding(c.header);
        if (r.status == control::DecodeStatus::Ok) {
            if (!r.binding.service.empty()) {
                refuse(w, id, outbound::Failure::NoRelay, 0,
                       fmt::format("relay {} bound the outbound channel to service \"{}\"",
                                   c.relay_name, r.binding.service.substr(0, control::kMaxName)));
                return;
            }
            start_splice(w, id, c, r.binding);
            return;
        }
        if (r.status == control::DecodeStatus::Error || r.needed <= c.header.size()) {
            refuse(w, id, outbound::Failure::NoRelay, 0,
                   fmt::format("bad binding header from relay {}: {}", c.relay_name, r.error));
            return;
        }
        // Exactly to the header's end: the partner's bytes stay for the splice.
        std::array<uint8_t, control::kBindingFixedSize + control::kMaxBindingPayload> tmp{};
        const ssize_t n =
            ::recv(c.channel.get(), tmp.data(), r.needed - c.header.size(), MSG_DONTWAIT);
        if (n > 0) {
            c.header.insert(c.header.end(), tmp.begin(), tmp.begin() + n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            c.wait =
                w.wait_fd(c.channel.get(), POLLIN, kChannelTimeout,
                          [this, id](io::Worker& wk, int rr) { on_channel_readable(wk, id, rr); });
            return;
        }
        refuse(w, id, outbound::Failure::NoRelay, 0,
               fmt::format("relay {} closed the data channel before binding it", c.relay_name));
        return;
    }
}

void OutboundShard::start_splice(io::Worker& w, uint64_t id, Conn& c, const control::Binding& b) {
    if (c.timer != 0) {
        w.cancel_timer(c.timer);
        c.timer = 0;
    }
    std::optional<SocketAddress> bound;
    if (auto a = SocketAddress::parse(b.listen_addr)) {
        bound = *a;
    }
    if (c.kind == ProxyKind::Socks5) {
        send_all_or_nothing(c.client.get(),
                            outbound::Socks5Server::reply(outbound::socks::kSucceeded, bound));
    } else {
        send_all_or_nothing(c.client.get(), as_bytes(outbound::http_established()));
    }
    if (!c.early.empty()) {
        // What the caller sent behind its request (a TLS ClientHello from a
        // client that did not wait): to the partner first.
        if (::send(c.channel.get(), c.early.data(), c.early.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
            static_cast<ssize_t>(c.early.size())) {
            refuse(w, id, outbound::Failure::NoRelay, 0, "the data channel refused early bytes");
            return;
        }
    }
    struct Info {
        std::string sid;
        std::string destination;
        std::string resolved;
        std::string client_ip;
        std::string client_port;
        std::string relay;
        LinkId link{};
    };
    Info info{hex_id(b.session_id),
              c.target.to_string(),
              b.client_addr.substr(0, control::kMaxAddress),
              c.peer.ip().to_string(),
              std::to_string(c.peer.port()),
              c.relay_name,
              c.link};
    log::event(log::Ev::OutboundOpen,
               {{f::kSessionId, info.sid},
                {f::kDestination, info.destination},
                {f::kResolvedAddr, info.resolved},
                {f::kClientAddr, info.client_ip},
                {f::kClientPort, info.client_port},
                {f::kRelayAddr, info.relay}},
               fmt::format("outbound {} from {} to {} ({}) via {}", info.sid, c.peer.to_string(),
                           info.destination, info.resolved, info.relay));
    host_.session_count(+1);
    UniqueFd client = std::move(c.client);
    UniqueFd channel = std::move(c.channel);
    c.counted = false;  // the session holds the load now; its close gives it back
    conns_.erase(id);
    (void)w.start_session(
        std::move(client), std::move(channel),
        [this, info = std::move(info)](io::Worker&, io::SessionId, const io::SessionEnd& end) {
            log::event(log::Ev::OutboundClose,
                       {{f::kSessionId, info.sid},
                        {f::kDestination, info.destination},
                        {f::kResolvedAddr, info.resolved},
                        {f::kClientAddr, info.client_ip},
                        {f::kClientPort, info.client_port},
                        {f::kRelayAddr, info.relay},
                        {f::kBytesUp, std::to_string(end.bytes_up)},
                        {f::kBytesDown, std::to_string(end.bytes_down)},
                        {f::kDurationMs, std::to_string(end.duration.count())},
                        {f::kReason, std::string(end.reason)}},
                       fmt::format("outbound {} to {} closed ({}): {} bytes up, {} down", info.sid,
                                   info.destination, end.reason, end.bytes_up, end.bytes_down));
            host_.session_count(-1);
            host_.outbound_ended(info.link);
        },
        0);
}

void OutboundShard::refuse(io::Worker& w, uint64_t id, outbound::Failure fail, int err,
                           std::string_view why) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    Conn& c = *it->second;
    if (c.requested && c.client) {
        // The caller finished its request and waits for this answer. A
        // malformed request was answered by its parser already.
        if (c.kind == ProxyKind::Socks5) {
            send_all_or_nothing(c.client.get(), outbound::Socks5Server::reply(
                                                    outbound::socks_code(fail, err), std::nullopt));
        } else {
            send_all_or_nothing(c.client.get(), as_bytes(outbound::http_response(fail)));
        }
    }
    const std::string reason(outbound::to_string(fail));
    const std::string client_ip = c.peer.ip().to_string();
    const int64_t held = reject_log_.allow(client_ip + ' ' + reason, Clock::now());
    if (held >= 0) {
        const std::string dest = c.target.host.empty() ? "-" : c.target.to_string();
        log::event(
            log::Ev::OutboundRejected,
            {{f::kDestination, dest},
             {f::kReason, reason},
             {f::kClientAddr, client_ip},
             {f::kClientPort, std::to_string(c.peer.port())},
             {f::kRelayAddr, c.relay_name},
             {f::kSuppressed, held > 0 ? std::to_string(held) : ""}},
            fmt::format("outbound request of {} to {} refused ({}): {}{}", c.peer.to_string(), dest,
                        reason, why, log::LogLimiter::held_note(held)));
    }
    drop(w, id);
}

void OutboundShard::drop(io::Worker& w, uint64_t id) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    Conn& c = *it->second;
    if (c.wait != 0) {
        w.cancel_wait(c.wait);  // before the fds close with the caller
    }
    if (c.timer != 0) {
        w.cancel_timer(c.timer);
    }
    if (c.stage == Conn::Stage::Asking) {
        host_.outbound_cancel(OutboundTicket{index_, id});
    }
    if (c.counted) {
        host_.outbound_ended(c.link);
    }
    conns_.erase(it);
}

void OutboundShard::stop_accepting(io::Worker& w) {
    closed_ = true;
    for (const uint64_t l : listeners_) {
        w.remove_listener(l);
    }
    listeners_.clear();
}

void OutboundShard::close_all(io::Worker& w) {
    stop_accepting(w);
    std::vector<uint64_t> ids;
    ids.reserve(conns_.size());
    for (const auto& [id, c] : conns_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        drop(w, id);
    }
}

}  // namespace sp::agent
