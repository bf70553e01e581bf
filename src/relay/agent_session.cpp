// SPDX-License-Identifier: Apache-2.0
#include "relay/agent_session.hpp"

#include <sys/epoll.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"

namespace sp::relay {

using log::Level;
namespace in = control::relay_in;
namespace out = control::relay_out;
using control::RelayState;

namespace {

template <class... Fs>
struct Overloaded : Fs... {
    using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

}  // namespace

Result<std::unique_ptr<AgentSession>> AgentSession::create(Host& host, Poller& poller,
                                                           LogLimiter& reject_log,
                                                           const control::TlsContext& tls,
                                                           UniqueFd fd, const SocketAddress& peer,
                                                           Options options) {
    auto stream = control::TlsStream::create(tls, std::move(fd));
    if (!stream) {
        return Unexpected(stream.error());
    }
    auto s = std::make_unique<AgentSession>(Private{}, host, poller, reject_log, peer,
                                            std::move(options));
    AgentSession* raw = s.get();
    s->fd_ = stream->fd();
    s->tls_.emplace(std::move(*stream));
    // Level-triggered: a ClientHello already queued fires at once, so the
    // first handshake step never runs inside create().
    if (auto r = poller.add(s->fd_, EPOLLIN, [raw](uint32_t ev) { raw->on_io(ev); }); !r) {
        s->fd_ = -1;
        return Unexpected(r.error());
    }
    const auto left =
        std::max(Poller::Clock::duration::zero(), s->options_.deadline - Poller::Clock::now());
    s->timer_ =
        poller.add_timer(std::chrono::duration_cast<std::chrono::milliseconds>(left), [raw] {
            raw->timer_ = 0;
            raw->feed(in::HandshakeTimeout{});
        });
    return s;
}

AgentSession::AgentSession(const Private& /*key*/, Host& host, Poller& poller,
                           LogLimiter& reject_log, const SocketAddress& peer, Options options)
    : host_(host),
      poller_(poller),
      reject_log_(reject_log),
      peer_addr_(peer),
      options_(std::move(options)),
      fsm_({options_.id, options_.software_version}) {}

AgentSession::~AgentSession() {
    if (fd_ >= 0) {
        poller_.remove(fd_);
    }
    poller_.cancel_timer(timer_);
}

void AgentSession::tick(Poller::Clock::time_point now) {
    if (ready()) {
        feed(in::Tick{now, peer_->last_rx(), peer_->last_tx()});
    }
    if (ready()) {
        update_poll();
    }
}

void AgentSession::replace() {
    feed(in::Replaced{});
}

void AgentSession::revoke_key() {
    feed(in::KeyRevoked{});
}

void AgentSession::reauthenticate() {
    feed(in::Reauthenticate{});
}

void AgentSession::deny_address() {
    feed(in::AddressDenied{});
}

void AgentSession::shutdown(bool upgrade) {
    feed(in::Shutdown{upgrade});
}

void AgentSession::send_tokens(const std::vector<control::Token>& tokens) {
    if (!ready()) {
        return;
    }
    for (size_t off = 0; off < tokens.size(); off += control::kMaxTokens) {
        const size_t n = std::min(control::kMaxTokens, tokens.size() - off);
        control::OpenChannels oc;
        oc.tokens.assign(tokens.begin() + static_cast<std::ptrdiff_t>(off),
                         tokens.begin() + static_cast<std::ptrdiff_t>(off + n));
        send(oc);
    }
    settle();
    if (ready()) {
        update_poll();
    }
}

void AgentSession::send_outbound_result(const control::OutboundResult& r) {
    if (!ready()) {
        return;
    }
    send(r);
    settle();
    if (ready()) {
        update_poll();
    }
}

void AgentSession::on_io(uint32_t events) {
    if (tls_) {
        step_handshake();
        return;
    }
    if (fsm_.state() == RelayState::Closing) {
        linger();
        return;
    }
    if (!peer_) {
        return;
    }
    if ((events & EPOLLOUT) != 0 && !peer_->flush()) {
        feed(in::WriteFailed{"write to the agent failed"});
        return;
    }
    read_frames();
    if (fsm_.state() == RelayState::AwaitHello || ready()) {
        update_poll();
    }
}

void AgentSession::step_handshake() {
    const control::TlsResult r = tls_->handshake();
    if (r.status == control::TlsStatus::WantRead) {
        poller_.modify(fd_, EPOLLIN);
        return;
    }
    if (r.status == control::TlsStatus::WantWrite) {
        poller_.modify(fd_, EPOLLOUT);
        return;
    }
    if (r.status != control::TlsStatus::Done) {
        // r.reason already reads "TLS handshake: ..." (tls.cpp).
        feed(in::TlsFailed{r.failure, r.reason});
        return;
    }
    std::string identity = tls_->peer_identity();
    peer_ = std::make_unique<control::FramedPeer>(std::move(*tls_));
    tls_.reset();
    feed(in::TlsDone{std::move(identity)});
    // HELLO may have come with the client's Finished: read what is there.
    read_frames();
    if (fsm_.state() == RelayState::AwaitHello || ready()) {
        update_poll();
    }
}

void AgentSession::read_frames() {
    const auto res = peer_->read_frames([this](control::Message&& m) {
        feed(in::FrameDecoded{std::move(m)});
        return fsm_.state() == RelayState::AwaitHello || ready();
    });
    if (fsm_.state() != RelayState::AwaitHello && !ready()) {
        return;  // a frame ended the connection
    }
    if (res.status == control::FramedPeer::ReadStatus::Eof) {
        feed(in::PeerEof{});
    } else if (res.status == control::FramedPeer::ReadStatus::Error) {
        feed(in::DecodeError{res.reason, res.error});
    }
}

void AgentSession::linger() {
    if (!peer_) {
        feed(in::Flushed{});
        return;
    }
    const control::TlsResult r = peer_->shutdown();
    if (r.status == control::TlsStatus::WantWrite) {
        poller_.modify(fd_, EPOLLOUT);
    } else if (r.status == control::TlsStatus::WantRead) {
        poller_.modify(fd_, EPOLLIN);
    } else {
        feed(in::Flushed{});  // out, or the socket failed: nothing more to send either way
    }
}

void AgentSession::feed(control::RelayInput input) {
    ++depth_;
    run(fsm_.on(std::move(input)));
    --depth_;
    if (depth_ == 0) {
        settle();
    }
}

// Runs after every top-level input: a send that failed becomes WriteFailed
// (FramedPeer::send results are never dropped), Closing starts its linger,
// and a Closed session asks to be destroyed.
void AgentSession::settle() {
    if (write_failed_) {
        write_failed_ = false;
        if (fsm_.state() == RelayState::AwaitHello || ready()) {
            feed(in::WriteFailed{std::move(write_error_)});
            return;  // that feed settled again
        }
    }
    if (fsm_.state() == RelayState::Closing && !lingering_) {
        lingering_ = true;
        poller_.cancel_timer(timer_);
        timer_ = poller_.add_timer(control::kClosingLinger, [this] {
            timer_ = 0;
            feed(in::LingerExpired{});
        });
        linger();
        return;
    }
    if (fsm_.state() == RelayState::Closed) {
        finish();
    }
}

void AgentSession::finish() {
    if (finished_) {
        return;
    }
    finished_ = true;
    if (fd_ >= 0) {
        poller_.remove(fd_);
        fd_ = -1;
    }
    poller_.cancel_timer(timer_);
    timer_ = 0;
    host_.finished(*this);
}

void AgentSession::send(const control::Message& m) {
    if (!peer_ || write_failed_) {
        return;
    }
    if (auto r = peer_->send(m); !r) {
        write_failed_ = true;
        write_error_ = fmt::format("cannot send {} to the agent: {}",
                                   control::to_string(control::type_of(m)), r.error().describe());
    }
}

void AgentSession::update_poll() {
    if (peer_ && fd_ >= 0) {
        poller_.modify(fd_, peer_->poll_events());
    }
}

void AgentSession::run(std::vector<control::RelayAction> actions) {
    for (auto& action : actions) {
        std::visit(
            Overloaded{
                [&](out::Send& s) { send(s.message); },
                [&](out::Goodbye& g) {
                    if (peer_) {
                        peer_->goodbye(g.reason, g.text);
                    }
                },
                [&](out::Claim&) {
                    const bool granted = host_.claim(*this);
                    if (granted) {
                        feed(in::ClaimGranted{});
                    } else {
                        feed(in::NameConflict{});
                    }
                },
                [&](out::Connected& c) {
                    poller_.cancel_timer(timer_);
                    timer_ = 0;
                    ready_at_ = Poller::Clock::now();
                    log::event(Level::Info, log::Ev::AgentConnected,
                               {{"AGENT", c.name},
                                {"AGENT_ADDR", peer_addr_.ip().to_string()},
                                {"KEY_ID", c.identity}},
                               fmt::format("agent \"{}\" connected from {} (software {}, pool {}, "
                                           "heartbeat {} ms)",
                                           c.name, peer_addr_.to_string(), c.software_version,
                                           c.pool, c.heartbeat_ms));
                    host_.ready(*this);
                },
                [&](out::ApplyConfig& c) { send(host_.apply_config(*this, c.config)); },
                [&](out::IssueTokens& t) { host_.issue_tokens(*this, t.count); },
                [&](out::ReportBackendFailed& b) {
                    log::event(Level::Warn, log::Ev::BackendFailed,
                               {{"SESSION_ID", fmt::format("{:016x}", b.failure.session_id)},
                                {"AGENT", name()},
                                {"BACKEND_ADDR", b.failure.backend},
                                {"REASON", log::errno_reason(b.failure.error)}},
                               fmt::format("agent \"{}\" could not reach backend {}: {}", name(),
                                           b.failure.backend, std::strerror(b.failure.error)));
                },
                [&](out::SetDraining& d) {
                    host_.set_draining(*this, d.draining);
                    log::event(d.draining ? log::Ev::AgentDrain : log::Ev::AgentResume,
                               {{"AGENT", name()}, {"AGENT_ADDR", peer_addr_.ip().to_string()}},
                               d.draining
                                   ? fmt::format("agent \"{}\" is draining: it gets new "
                                                 "sessions only of services no other "
                                                 "agent serves",
                                                 name())
                                   : fmt::format("agent \"{}\" takes new sessions again", name()));
                },
                [&](out::StartOutbound& o) { host_.outbound(*this, o.request); },
                [&](out::Close& c) {
                    log_close(c);
                    if (c.was_ready) {
                        host_.gone(*this);
                    }
                },
            },
            action);
    }
}

void AgentSession::log_close(const out::Close& c) {
    const std::string reason(control::to_string(c.reason));
    const std::string addr = peer_addr_.ip().to_string();
    if (c.event == control::CloseEvent::AgentRejected) {
        const int64_t held = reject_log_.allow(addr, LogLimiter::Clock::now());
        if (held < 0) {
            return;
        }
        log::event(log::Ev::AgentRejected,
                   {{"AGENT", name()},
                    {"AGENT_ADDR", addr},
                    {"KEY_ID", identity()},
                    {"REASON", reason},
                    {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
                   fmt::format("{}{}", c.text, LogLimiter::held_note(held)));
    } else if (c.event == control::CloseEvent::AgentDisconnected) {
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(Poller::Clock::now() - ready_at_);
        log::event(log::Ev::AgentDisconnected,
                   {{"AGENT", name()},
                    {"AGENT_ADDR", addr},
                    {"KEY_ID", identity()},
                    {"DURATION_MS", std::to_string(ms.count())},
                    {"REASON", reason}},
                   fmt::format("agent \"{}\" disconnected: {}", name(), c.text));
    }
}

}  // namespace sp::relay
