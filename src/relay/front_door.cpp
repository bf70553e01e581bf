// SPDX-License-Identifier: Apache-2.0
#include "relay/front_door.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"
#include "io/net.hpp"

namespace sp::relay {

using log::Level;
using namespace std::chrono_literals;

namespace {

constexpr size_t kMaxHandshaking = 4096;  // silent connections beyond this are refused
constexpr int kBacklog = 1024;
constexpr int kAcceptBatch = 64;
constexpr auto kAcceptPause = 100ms;

}  // namespace

struct FrontDoor::Conn {
    enum class Stage { Classify, ChannelHello };
    uint64_t id = 0;
    Stage stage = Stage::Classify;
    SocketAddress addr;
    UniqueFd fd;
    std::vector<uint8_t> hello;
    uint64_t timer = 0;
    Poller::Clock::time_point accepted;
};

Result<std::unique_ptr<FrontDoor>> FrontDoor::create(Host& host, Poller& poller,
                                                     LogLimiter& reject_log,
                                                     const std::vector<SocketAddress>& addresses,
                                                     AgentRules rules) {
    auto door = std::make_unique<FrontDoor>(host, poller, reject_log, std::move(rules));
    for (const auto& addr : addresses) {
        auto fd = io::listen_tcp(addr, false, kBacklog);
        if (!fd) {
            log::event(Level::Error, "bind-failed",
                       {{"LISTEN_ADDR", addr.to_string()}, {"REASON", fd.error().describe()}},
                       fmt::format("cannot listen on control address {}: {}", addr.to_string(),
                                   fd.error().describe()));
            return Unexpected(fd.error());
        }
        const int raw = fd->get();
        FrontDoor* d = door.get();
        if (auto r = poller.add(raw, EPOLLIN, [d, raw](uint32_t) { d->on_accept(raw); }); !r) {
            return Unexpected(r.error());
        }
        door->listeners_.push_back(std::move(*fd));
        log::event(Level::Info, "control-listen", {{"LISTEN_ADDR", addr.to_string()}},
                   fmt::format("accepting agents on {}", addr.to_string()));
    }
    return door;
}

FrontDoor::FrontDoor(Host& host, Poller& poller, LogLimiter& reject_log, AgentRules rules)
    : host_(host), poller_(poller), reject_log_(reject_log), rules_(std::move(rules)) {}

FrontDoor::~FrontDoor() {
    close();
}

void FrontDoor::close() {
    closed_ = true;
    for (auto& fd : listeners_) {
        poller_.remove(fd.get());
    }
    listeners_.clear();
    for (auto& [id, c] : conns_) {
        poller_.remove(c->fd.get());
        poller_.cancel_timer(c->timer);
    }
    conns_.clear();
}

void FrontDoor::on_accept(int listen_fd) {
    for (int i = 0; i < kAcceptBatch; ++i) {
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
                poller_.modify(listen_fd, 0);
                poller_.add_timer(kAcceptPause, [this, listen_fd] {
                    if (!closed_) {
                        poller_.modify(listen_fd, EPOLLIN);
                    }
                });
            }
            return;
        }
        const auto peer = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
        if (!peer) {
            continue;
        }
        if (!client_allowed(peer->ip(), rules_.allow, rules_.deny)) {
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
        if (conns_.size() + host_.handshaking() >= kMaxHandshaking || closed_) {
            continue;
        }
        auto c = std::make_unique<Conn>();
        c->id = next_id_++;
        c->addr = *peer;
        c->accepted = Poller::Clock::now();
        c->fd = std::move(fd);
        const uint64_t id = c->id;
        if (!poller_.add(c->fd.get(), EPOLLIN, [this, id](uint32_t) { on_event(id); })) {
            continue;
        }
        c->timer = poller_.add_timer(rules_.handshake_timeout, [this, id] {
            drop(id, "handshake-timeout", "no complete hello within handshake_timeout_ms");
        });
        conns_.emplace(id, std::move(c));
    }
}

void FrontDoor::drop(uint64_t id, std::string_view reason, std::string_view message) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    std::unique_ptr<Conn> c = std::move(it->second);
    conns_.erase(it);
    if (c->fd) {
        poller_.remove(c->fd.get());
    }
    poller_.cancel_timer(c->timer);
    if (reason.empty()) {
        return;
    }
    const int64_t held = reject_log_.allow(c->addr.ip().to_string(), Poller::Clock::now());
    if (held >= 0) {
        log::event(Level::Warn, "agent-rejected",
                   {{"AGENT_ADDR", c->addr.ip().to_string()},
                    {"REASON", std::string(reason)},
                    {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
                   fmt::format("{}{}", message, LogLimiter::held_note(held)));
    }
}

void FrontDoor::on_event(uint64_t id) {
    const auto it = conns_.find(id);
    if (it == conns_.end()) {
        return;
    }
    Conn& c = *it->second;
    if (c.stage == Conn::Stage::Classify) {
        classify(c);
    } else {
        read_hello(c);
    }
}

void FrontDoor::classify(Conn& c) {
    uint8_t buf[control::kClassifyBytes];
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        drop(c.id, "", "");
        return;
    }
    if (n < 0) {
        return;
    }
    switch (control::classify_first_bytes(std::span(buf, static_cast<size_t>(n)))) {
        case control::FirstBytes::NeedMore:
            return;  // level-triggered: more bytes bring us back
        case control::FirstBytes::Garbage:
            drop(c.id, "protocol", "first bytes are neither TLS nor a data-channel hello");
            return;
        case control::FirstBytes::DataChannel:
            c.stage = Conn::Stage::ChannelHello;
            read_hello(c);
            return;
        case control::FirstBytes::Tls: {
            UniqueFd fd = std::move(c.fd);
            const SocketAddress addr = c.addr;
            const auto accepted = c.accepted;
            poller_.remove(fd.get());
            drop(c.id, "", "");
            host_.adopt_tls(std::move(fd), addr, accepted);
            return;
        }
    }
}

void FrontDoor::read_hello(Conn& c) {
    uint8_t buf[control::kChannelHelloSize];
    const size_t want = control::kChannelHelloSize - c.hello.size();
    // Read exactly the hello: bytes after it belong to the session.
    const ssize_t n = ::recv(c.fd.get(), buf, want, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        drop(c.id, "", "");
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
        drop(c.id, "protocol", r.error);
        return;
    }
    UniqueFd fd = std::move(c.fd);
    const SocketAddress addr = c.addr;
    poller_.remove(fd.get());
    drop(c.id, "", "");
    host_.channel(std::move(fd), addr, r.token);
}

}  // namespace sp::relay
