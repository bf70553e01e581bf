// SPDX-License-Identifier: Apache-2.0
#include "relay/front_door.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"

namespace sp::relay {

using namespace std::chrono_literals;

namespace {

// A connection that has sent a strict prefix of a TLS record or of "SPDC"
// stays readable while we only peek: look again after this pause rather
// than spin on a poll that completes at once.
constexpr auto kRecheck = 20ms;

std::string suppressed(int64_t held) {
    return held > 0 ? std::to_string(held) : std::string();
}

}  // namespace

FrontDoor::FrontDoor(Host& host, size_t cap, size_t per_address,
                     std::shared_ptr<const AgentRules> rules)
    : host_(host), preauth_(cap, per_address), rules_(std::move(rules)) {}

void FrontDoor::add_listener(io::Worker& w, UniqueFd fd, const SocketAddress& addr) {
    if (closed_) {
        return;
    }
    listeners_.emplace_back(addr,
                            w.add_listener(
                                std::move(fd),
                                [this](io::Worker& wk, UniqueFd c, const SocketAddress& peer,
                                       const SocketAddress&) { on_accept(wk, std::move(c), peer); },
                                [this, addr](io::Worker&, int err, bool paused) {
                                    on_accept_error(addr, err, paused);
                                }));
}

void FrontDoor::remove_listener(io::Worker& w, const SocketAddress& addr) {
    std::erase_if(listeners_, [&](const auto& l) {
        if (l.first == addr) {
            w.remove_listener(l.second);
            return true;
        }
        return false;
    });
}

void FrontDoor::close(io::Worker& w) {
    closed_ = true;
    for (const auto& [addr, id] : listeners_) {
        w.remove_listener(id);
    }
    listeners_.clear();
    for (auto& [id, c] : conns_) {
        disarm(w, c);
        preauth_.leave(c.peer.ip());
    }
    conns_.clear();
}

void FrontDoor::refuse(const SocketAddress& peer, std::string_view reason,
                       std::string_view message) {
    const std::string addr = peer.ip().to_string();
    // Keyed by address and reason: a flood of one kind (say, over the
    // handshake limit) must not hide another kind from the same address.
    const int64_t held = reject_log_.allow(addr + ' ' + std::string(reason), Clock::now());
    if (held >= 0) {
        log::event(log::Ev::AgentRejected,
                   {{"AGENT_ADDR", addr},
                    {"REASON", std::string(reason)},
                    {"SUPPRESSED", suppressed(held)}},
                   fmt::format("{}{}", message, LogLimiter::held_note(held)));
    }
}

void FrontDoor::on_accept_error(const SocketAddress& addr, int err, bool paused) {
    if (resource_log_.allow(addr.to_string(), Clock::now()) < 0) {
        return;
    }
    log::event(log::Ev::ResourceLimit,
               {{"LISTEN_ADDR", addr.to_string()}, {"REASON", log::errno_reason(err)}},
               fmt::format("accept on the control port {} failed: {}{}", addr.to_string(),
                           std::strerror(-err), paused ? "; accepting paused briefly" : ""));
}

void FrontDoor::on_accept(io::Worker& w, UniqueFd fd, const SocketAddress& peer) {
    const AgentRules& rules = *rules_;
    if (!client_allowed(peer.ip(), rules.allow, rules.deny)) {
        // Closed without a byte: no TLS work for strangers.
        refuse(peer, "not-allowed",
               fmt::format("connection from {} refused by allow_agents/deny_agents",
                           peer.to_string()));
        return;
    }
    if (closed_) {
        return;
    }
    if (!preauth_.enter(peer.ip())) {
        refuse(peer, "handshake-limit",
               fmt::format("connection from {} closed: too many unauthenticated connections "
                           "from this address or in total",
                           peer.to_string()));
        return;
    }
    const uint64_t id = next_id_++;
    const auto now = Clock::now();
    Conn c;
    c.fd = std::move(fd);
    c.peer = peer;
    c.accepted = now;
    c.deadline = now + rules.handshake_timeout;
    conns_.emplace(id, std::move(c));
    arm(w, id);
}

void FrontDoor::disarm(io::Worker& w, Conn& c) {
    if (c.wait == 0) {
        return;
    }
    if (c.timer) {
        w.cancel_timer(c.wait);
    } else {
        w.cancel_wait(c.wait);
    }
    c.wait = 0;
}

void FrontDoor::arm(io::Worker& w, uint64_t id) {
    Conn& c = conns_.at(id);
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - Clock::now());
    if (left.count() <= 0) {
        drop(w, id, "handshake-timeout", "no complete hello within handshake_timeout_ms");
        return;
    }
    c.timer = false;
    c.wait = w.wait_fd(c.fd.get(), POLLIN, left,
                       [this, id](io::Worker& wk, int res) { on_ready(wk, id, res); });
}

void FrontDoor::on_ready(io::Worker& w, uint64_t id, int res) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    Conn& c = it->second;
    c.wait = 0;
    if (res == -ETIMEDOUT) {
        drop(w, id, "handshake-timeout", "no complete hello within handshake_timeout_ms");
        return;
    }
    if (res == -EBUSY) {
        arm(w, id);  // no SQE was free: try again, still within the deadline
        return;
    }
    if (res < 0) {
        drop(w, id, "", "");
        return;
    }
    if (c.hello) {
        read_hello(w, id, c);
    } else {
        classify(w, id, c);
    }
}

void FrontDoor::classify(io::Worker& w, uint64_t id, Conn& c) {
    uint8_t buf[control::kClassifyBytes];
    // MSG_PEEK: TLS must see its record intact.
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        drop(w, id, "", "");
        return;
    }
    if (n < 0) {
        arm(w, id);
        return;
    }
    switch (control::classify_first_bytes(std::span(buf, static_cast<size_t>(n)))) {
        case control::FirstBytes::NeedMore:
            c.timer = true;
            c.wait = w.add_timer(kRecheck, [this, id](io::Worker& wk) {
                if (const auto again = conns_.find(id); again != conns_.end()) {
                    again->second.wait = 0;
                    arm(wk, id);
                }
            });
            return;
        case control::FirstBytes::Garbage:
            drop(w, id, "protocol", "first bytes are neither TLS nor a data-channel hello");
            return;
        case control::FirstBytes::DataChannel:
            c.hello = true;
            read_hello(w, id, c);
            return;
        case control::FirstBytes::Tls: {
            UniqueFd fd = std::move(c.fd);
            const SocketAddress peer = c.peer;
            const auto accepted = c.accepted;
            preauth_.leave(peer.ip());
            conns_.erase(id);
            host_.tls(std::move(fd), peer, accepted);
            return;
        }
    }
}

void FrontDoor::read_hello(io::Worker& w, uint64_t id, Conn& c) {
    // Exactly the hello: bytes after it would belong to the session.
    const ssize_t n =
        ::recv(c.fd.get(), c.buf.data() + c.have, c.buf.size() - c.have, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        drop(w, id, "", "");
        return;
    }
    if (n > 0) {
        c.have += static_cast<size_t>(n);
    }
    if (c.have < c.buf.size()) {
        arm(w, id);
        return;
    }
    const auto r = control::decode_channel_hello(c.buf);
    if (r.status != control::DecodeStatus::Ok) {
        drop(w, id, "protocol", r.error.empty() ? "bad data-channel hello" : r.error);
        return;
    }
    // The agent must now wait for the binding header: anything already
    // there, or a FIN, makes the channel unusable.
    char b = 0;
    const ssize_t extra = ::recv(c.fd.get(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    const bool early = extra >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    UniqueFd fd = std::move(c.fd);
    const SocketAddress peer = c.peer;
    preauth_.leave(peer.ip());
    conns_.erase(id);
    host_.channel(w, std::move(fd), peer, r.token, early);
}

void FrontDoor::sweep(io::Worker& w, Clock::time_point now) {
    std::vector<uint64_t> late;
    for (const auto& [id, c] : conns_) {
        if (now > c.deadline + 1s) {
            late.push_back(id);
        }
    }
    for (const uint64_t id : late) {
        drop(w, id, "handshake-timeout", "no complete hello within handshake_timeout_ms");
    }
}

void FrontDoor::drop(io::Worker& w, uint64_t id, std::string_view reason,
                     std::string_view message) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    disarm(w, it->second);
    const SocketAddress peer = it->second.peer;
    preauth_.leave(peer.ip());
    conns_.erase(it);  // closes the fd
    if (!reason.empty()) {
        refuse(peer, reason, message);
    }
}

}  // namespace sp::relay
