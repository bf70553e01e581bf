// SPDX-License-Identifier: Apache-2.0
#include "agent/relay_link.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstring>

#include <fmt/format.h>

#include "agent/link_events.hpp"
#include "io/net.hpp"

namespace sp::agent {

namespace in = control::link_in;
namespace act = control::link_do;

RelayLink::RelayLink(LinkId id, config::RelayEntry entry, RelayCredentials creds, Poller& poller,
                     LinkHost& host, control::Hello hello, control::Config config, uint64_t seed)
    : id_(id),
      entry_(std::move(entry)),
      creds_(std::move(creds)),
      name_(entry_.address.to_string()),
      poller_(poller),
      host_(host),
      fsm_(std::move(hello), std::move(config), seed) {}

RelayLink::~RelayLink() {
    for (const uint64_t t : timers_) {
        if (t != 0) {
            poller_.cancel_timer(t);
        }
    }
    if (watched_ >= 0) {
        poller_.remove(watched_);
    }
}

LinkPhase RelayLink::phase() const noexcept {
    switch (fsm_.state()) {
        case control::LinkState::Idle:
            return LinkPhase::Idle;
        case control::LinkState::Backoff:
            return LinkPhase::Backoff;
        case control::LinkState::Ready:
            return LinkPhase::Ready;
        case control::LinkState::Connecting:
        case control::LinkState::Handshaking:
        case control::LinkState::AwaitAck:
            return LinkPhase::Trying;
    }
    return LinkPhase::Idle;
}

void RelayLink::start() {
    feed(in::Start{});
}

void RelayLink::stop(control::StopReason reason) {
    feed(in::Stop{reason});
}

void RelayLink::new_config(control::Config config) {
    feed(in::NewConfig{std::move(config)});
}

void RelayLink::tick(Poller::Clock::time_point now) {
    if (peer_) {
        feed(in::Tick{now, peer_->last_rx(), peer_->last_tx()});
    }
}

void RelayLink::set_draining(bool draining) {
    feed(in::SetDraining{draining});
}

std::optional<std::chrono::microseconds> RelayLink::rtt() const {
    if (fsm_.state() != control::LinkState::Ready || !peer_) {
        return std::nullopt;
    }
    struct tcp_info ti {};
    socklen_t len = sizeof ti;
    if (::getsockopt(peer_->fd(), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || ti.tcpi_rtt == 0) {
        return std::nullopt;
    }
    return std::chrono::microseconds(ti.tcpi_rtt);
}

LinkStatus RelayLink::status() const {
    return LinkStatus{name_, fsm_.state(), state_since_, rtt(), last_error_, entry_.standby};
}

void RelayLink::send_backend_failed(control::BackendFailed msg) {
    if (fsm_.state() != control::LinkState::Ready || !peer_) {
        return;  // the relay already forgot the session with the connection
    }
    bool abort = false;
    send(msg, abort);
}

bool RelayLink::send_outbound(const control::OutboundRequest& msg) {
    if (fsm_.state() != control::LinkState::Ready || !peer_) {
        return false;
    }
    bool abort = false;
    send(msg, abort);
    return !abort && fsm_.state() == control::LinkState::Ready;
}

// Every outcome enters here. Carrying out an action can produce the next
// input (a send fails, a connect fails at once): it is queued and taken
// after the current list, so the FSM sees inputs in order and is never
// stepped from inside its own step.
void RelayLink::feed(control::LinkInput input) {
    inputs_.push_back(std::move(input));
    if (running_) {
        return;
    }
    running_ = true;
    const LinkPhase before = phase();
    while (!inputs_.empty()) {
        const auto state = fsm_.state();
        auto actions = fsm_.step(inputs_.front());
        inputs_.pop_front();
        if (fsm_.state() != state) {
            state_since_ = std::chrono::system_clock::now();
        }
        bool abort = false;
        for (auto& a : actions) {
            run(a, abort);
            if (abort) {
                break;  // the FSM contract: a failed Send voids the rest
            }
        }
    }
    running_ = false;
    if (phase() != before) {
        host_.phase_changed(id_);
    }
}

void RelayLink::run(control::LinkAction& a, bool& abort) {
    if (std::holds_alternative<act::StartConnect>(a)) {
        start_connect();
    } else if (std::holds_alternative<act::StartTls>(a)) {
        const std::string verify = entry_.address.ip ? std::string() : entry_.address.host;
        auto s = control::TlsStream::create(creds_.tls, std::move(fd_), verify);
        if (!s) {
            feed(in::TlsFailed{control::TlsError::Protocol, s.error().describe()});
            return;
        }
        tls_.emplace(std::move(*s));
        step_handshake();
    } else if (auto* s = std::get_if<act::Send>(&a)) {
        send(s->message, abort);
    } else if (auto* g = std::get_if<act::Goodbye>(&a)) {
        if (peer_) {
            peer_->goodbye(g->reason, g->message);  // best effort: the close follows
        }
    } else if (std::holds_alternative<act::Close>(a)) {
        close();
    } else if (auto* t = std::get_if<act::ArmTimer>(&a)) {
        arm(t->timer, t->delay);
    } else if (auto* c = std::get_if<act::CancelTimer>(&a)) {
        cancel(c->timer);
    } else if (auto* d = std::get_if<act::DialChannels>(&a)) {
        if (address_) {
            host_.dial_channels(id_, *address_, std::move(d->tokens));
        }
    } else if (auto* r = std::get_if<act::ReportConfigResult>(&a)) {
        log_config_result(name_, r->result);
    } else if (auto* o = std::get_if<act::OutboundAnswer>(&a)) {
        host_.outbound_result(id_, o->result);
    } else if (auto* up = std::get_if<act::Connected>(&a)) {
        ready_since_ = Poller::Clock::now();
        log_relay_connected(name_, creds_.key_id, *up);
    } else if (auto* down = std::get_if<act::Disconnected>(&a)) {
        std::optional<std::chrono::milliseconds> up_for;
        if (ready_since_ != Poller::Clock::time_point{}) {
            up_for = std::chrono::duration_cast<std::chrono::milliseconds>(Poller::Clock::now() -
                                                                           ready_since_);
        }
        ready_since_ = {};
        last_error_ = down->detail.empty()
                          ? std::string(control::to_string(down->reason))
                          : fmt::format("{}: {}", control::to_string(down->reason), down->detail);
        log_relay_disconnected(name_, up_for, *down);
    }
}

void RelayLink::start_connect() {
    if (entry_.address.ip) {
        connect_to(SocketAddress(*entry_.address.ip, entry_.address.ports.first));
        return;
    }
    // Resolved afresh for every attempt: a relay that moved is found again.
    resolving_ = true;
    host_.resolve(entry_.address.host);
}

void RelayLink::on_resolved(const std::string& host, const std::optional<IpAddress>& ip) {
    if (!resolving_ || host != entry_.address.host) {
        return;
    }
    resolving_ = false;
    if (fsm_.state() != control::LinkState::Connecting) {
        return;  // stopped or timed out meanwhile
    }
    if (!ip) {
        feed(in::ConnectFailed{-EHOSTUNREACH, fmt::format("cannot resolve \"{}\"", host)});
        return;
    }
    connect_to(SocketAddress(*ip, entry_.address.ports.first));
}

void RelayLink::connect_to(const SocketAddress& addr) {
    address_ = addr;
    UniqueFd fd;
    const int rc = io::connect_tcp_nonblocking(addr, fd);
    if (rc != 0 && rc != -EINPROGRESS) {
        feed(in::ConnectFailed{rc, fmt::format("connect: {}", std::strerror(-rc))});
        return;
    }
    fd_ = std::move(fd);
    watch(EPOLLOUT);
}

void RelayLink::watch(uint32_t events) {
    const int fd = peer_ ? peer_->fd() : tls_ ? tls_->fd() : fd_.get();
    if (watched_ == fd) {
        poller_.modify(fd, events);
        return;
    }
    if (watched_ >= 0) {
        poller_.remove(watched_);
    }
    watched_ = -1;
    if (fd < 0) {
        return;
    }
    if (auto r = poller_.add(fd, events, [this](uint32_t ev) { on_io(ev); }); !r) {
        feed(in::WriteFailed{r.error().describe()});
        return;
    }
    watched_ = fd;
}

void RelayLink::on_io(uint32_t events) {
    switch (fsm_.state()) {
        case control::LinkState::Connecting: {
            if (const int err = -io::socket_error(fd_.get()); err != 0) {
                feed(in::ConnectFailed{-err, fmt::format("connect: {}", std::strerror(err))});
            } else {
                feed(in::ConnectOk{});
            }
            return;
        }
        case control::LinkState::Handshaking:
            step_handshake();
            return;
        case control::LinkState::AwaitAck:
        case control::LinkState::Ready:
            if ((events & EPOLLOUT) != 0 && peer_ && !peer_->flush()) {
                feed(in::WriteFailed{"flush failed"});
                return;
            }
            read_frames();
            return;
        case control::LinkState::Idle:
        case control::LinkState::Backoff:
            return;  // a late event for a socket already closed
    }
}

void RelayLink::step_handshake() {
    const auto r = tls_->handshake();
    if (r.status == control::TlsStatus::WantRead) {
        watch(EPOLLIN);
        return;
    }
    if (r.status == control::TlsStatus::WantWrite) {
        watch(EPOLLOUT);
        return;
    }
    if (r.status != control::TlsStatus::Done) {
        const auto e = r.failure == control::TlsFailure::BadKey ? control::TlsError::BadKey
                                                                : control::TlsError::Protocol;
        feed(in::TlsFailed{e, r.reason});
        return;
    }
    peer_ = std::make_unique<control::FramedPeer>(std::move(*tls_));
    tls_.reset();
    watch(peer_->poll_events());
    feed(in::TlsDone{});
}

void RelayLink::read_frames() {
    const auto out = peer_->read_frames([this](control::Message&& m) {
        feed(in::FrameDecoded{std::move(m)});
        return peer_ != nullptr;  // a Close destroyed the peer: read_frames must stop
    });
    if (!peer_) {
        return;
    }
    switch (out.status) {
        case control::FramedPeer::ReadStatus::Open:
            watch(peer_->poll_events());
            return;
        case control::FramedPeer::ReadStatus::Eof:
            feed(in::PeerEof{});
            return;
        case control::FramedPeer::ReadStatus::Error:
            if (out.tls == control::TlsFailure::BadKey) {
                feed(in::TlsFailed{control::TlsError::BadKey, out.error});
            } else if (out.tls == control::TlsFailure::Protocol) {
                feed(in::TlsFailed{control::TlsError::Protocol, out.error});
            } else if (out.tls == control::TlsFailure::Other) {
                feed(in::ReadFailed{out.error});
            } else {
                feed(in::DecodeError{out.reason, out.error});
            }
            return;
    }
}

void RelayLink::send(const control::Message& m, bool& abort) {
    if (!peer_) {
        return;
    }
    // FramedPeer::send fails when the relay stops reading (output bound) or
    // the socket broke: the link goes down, as its contract says.
    if (auto r = peer_->send(m); !r) {
        abort = true;
        feed(in::WriteFailed{r.error().describe()});
        return;
    }
    watch(peer_->poll_events());
}

void RelayLink::close() {
    if (watched_ >= 0) {
        poller_.remove(watched_);
        watched_ = -1;
    }
    resolving_ = false;
    peer_.reset();
    tls_.reset();
    fd_.reset();
    host_.link_closed(id_);
}

void RelayLink::arm(control::LinkTimer timer, std::chrono::milliseconds delay) {
    cancel(timer);
    timers_[static_cast<size_t>(timer)] = poller_.add_timer(delay, [this, timer] {
        timers_[static_cast<size_t>(timer)] = 0;
        switch (timer) {
            case control::LinkTimer::Deadline:
                feed(in::ConnectDeadline{});
                return;
            case control::LinkTimer::Backoff:
                feed(in::BackoffElapsed{});
                return;
            case control::LinkTimer::Stable:
                feed(in::ReadyStable{});
                return;
        }
    });
}

void RelayLink::cancel(control::LinkTimer timer) {
    auto& t = timers_[static_cast<size_t>(timer)];
    if (t != 0) {
        poller_.cancel_timer(t);
        t = 0;
    }
}

}  // namespace sp::agent
