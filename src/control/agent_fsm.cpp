// SPDX-License-Identifier: Apache-2.0
#include "control/agent_fsm.hpp"

#include <fmt/format.h>

namespace sp::control {

namespace {

LinkDown from_goodbye(GoodbyeReason r) noexcept {
    switch (r) {
        case GoodbyeReason::Shutdown:
            return LinkDown::Shutdown;
        case GoodbyeReason::Reload:
            return LinkDown::Reload;
        case GoodbyeReason::BadKey:
            return LinkDown::BadKey;
        case GoodbyeReason::ProtocolError:
            return LinkDown::Protocol;
        case GoodbyeReason::Version:
            return LinkDown::Version;
        case GoodbyeReason::Timeout:
            return LinkDown::Timeout;
        case GoodbyeReason::Replaced:
            return LinkDown::Replaced;
        case GoodbyeReason::NotAllowed:
            return LinkDown::NotAllowed;
        case GoodbyeReason::Internal:
            return LinkDown::Internal;
    }
    return LinkDown::Protocol;
}

// Failures an operator has to fix (a key, a version, a peer that speaks
// something else): logged as errors, every time.
bool needs_operator(LinkDown r) noexcept {
    return r == LinkDown::BadKey || r == LinkDown::Version || r == LinkDown::Protocol;
}

}  // namespace

std::string_view to_string(LinkState s) noexcept {
    switch (s) {
        case LinkState::Idle:
            return "idle";
        case LinkState::Connecting:
            return "connecting";
        case LinkState::Handshaking:
            return "handshaking";
        case LinkState::AwaitAck:
            return "await-ack";
        case LinkState::Ready:
            return "ready";
        case LinkState::Backoff:
            return "backoff";
    }
    return "?";
}

std::string_view to_string(LinkDown r) noexcept {
    switch (r) {
        case LinkDown::Shutdown:
            return "shutdown";
        case LinkDown::Reload:
            return "reload";
        case LinkDown::BadKey:
            return "bad-key";
        case LinkDown::Protocol:
            return "protocol";
        case LinkDown::Version:
            return "version";
        case LinkDown::Timeout:
            return "timeout";
        case LinkDown::Replaced:
            return "replaced";
        case LinkDown::NotAllowed:
            return "not-allowed";
        case LinkDown::Internal:
            return "internal";
        case LinkDown::Standby:
            return "standby";
        case LinkDown::Connect:
            return "connect";
        case LinkDown::Closed:
            return "closed";
        case LinkDown::Io:
            return "io";
    }
    return "?";
}

AgentLinkFsm::AgentLinkFsm(Hello hello, Config config, uint64_t seed)
    : hello_(std::move(hello)),
      config_(std::move(config)),
      backoff_(kLinkBackoffInitial, kLinkBackoffCap, seed) {}

std::vector<LinkAction> AgentLinkFsm::step(const LinkInput& in) {
    Actions out;
    std::visit([&](const auto& i) { on(i, out); }, in);
    return out;
}

void AgentLinkFsm::connect(Actions& out) {
    state_ = LinkState::Connecting;
    out.emplace_back(link_do::ArmTimer{LinkTimer::Deadline, kLinkConnectTimeout});
    out.emplace_back(link_do::StartConnect{});
}

void AgentLinkFsm::fail(LinkDown reason, std::optional<GoodbyeReason> goodbye, bool by_relay,
                        std::string detail, Actions& out) {
    const bool was_ready = state_ == LinkState::Ready;
    const bool first = backoff_.attempt() == 0;
    // A GOODBYE needs a framed channel: there is none before HELLO was sent.
    if (goodbye && (state_ == LinkState::AwaitAck || was_ready)) {
        out.emplace_back(link_do::Goodbye{*goodbye, detail});
    }
    out.emplace_back(link_do::Close{});
    out.emplace_back(link_do::CancelTimer{was_ready ? LinkTimer::Stable : LinkTimer::Deadline});
    // Retrying fast cannot fix a refused key or a version gap, but SPEC
    // wants the agent to retry forever: go straight to the cap.
    if (reason == LinkDown::BadKey || reason == LinkDown::Version) {
        backoff_.max_out();
    }
    const auto delay = backoff_.next();
    state_ = LinkState::Backoff;
    out.emplace_back(link_do::ArmTimer{LinkTimer::Backoff, delay});
    // While a relay stays unreachable only the first failure of the series
    // is worth a line; a link that was up, or an error, always is.
    const bool error = needs_operator(reason);
    if (was_ready || error || first) {
        out.emplace_back(link_do::Disconnected{reason, by_relay, error, delay, std::move(detail)});
    }
}

void AgentLinkFsm::on(const link_in::Start& /*in*/, Actions& out) {
    wanted_ = true;
    if (state_ == LinkState::Idle) {
        connect(out);
    }
}

void AgentLinkFsm::on(const link_in::Stop& in, Actions& out) {
    wanted_ = false;
    GoodbyeReason g = GoodbyeReason::Shutdown;
    LinkDown down = LinkDown::Shutdown;
    std::string_view why = "agent stopping";
    if (in.reason == StopReason::Standby) {
        down = LinkDown::Standby;
        why = "a primary relay is up again: leaving the standby";
    } else if (in.reason == StopReason::Reload) {
        g = GoodbyeReason::Reload;
        down = LinkDown::Reload;
        why = "relay entry changed by reload";
    }
    switch (state_) {
        case LinkState::Idle:
            return;
        case LinkState::Backoff:
            out.emplace_back(link_do::CancelTimer{LinkTimer::Backoff});
            break;
        case LinkState::Connecting:
        case LinkState::Handshaking:
            out.emplace_back(link_do::CancelTimer{LinkTimer::Deadline});
            out.emplace_back(link_do::Close{});
            break;
        case LinkState::AwaitAck:
            out.emplace_back(link_do::CancelTimer{LinkTimer::Deadline});
            out.emplace_back(link_do::Goodbye{g, std::string(why)});
            out.emplace_back(link_do::Close{});
            break;
        case LinkState::Ready:
            out.emplace_back(link_do::CancelTimer{LinkTimer::Stable});
            out.emplace_back(link_do::Goodbye{g, std::string(why)});
            out.emplace_back(link_do::Close{});
            out.emplace_back(
                link_do::Disconnected{down, false, false, std::nullopt, std::string(why)});
            break;
    }
    state_ = LinkState::Idle;
}

void AgentLinkFsm::on(const link_in::ConnectOk& /*in*/, Actions& out) {
    if (state_ == LinkState::Connecting) {
        state_ = LinkState::Handshaking;
        out.emplace_back(link_do::StartTls{});
    }
}

void AgentLinkFsm::on(const link_in::ConnectFailed& in, Actions& out) {
    if (state_ == LinkState::Connecting) {
        fail(LinkDown::Connect, std::nullopt, false, in.detail, out);
    }
}

void AgentLinkFsm::on(const link_in::TlsDone& /*in*/, Actions& out) {
    if (state_ == LinkState::Handshaking) {
        state_ = LinkState::AwaitAck;
        out.emplace_back(link_do::Send{hello_});
    }
}

void AgentLinkFsm::on(const link_in::TlsFailed& in, Actions& out) {
    // Also after the handshake: in TLS 1.3 a refused client certificate
    // shows up as an alert on the first read.
    if (state_ == LinkState::Handshaking || state_ == LinkState::AwaitAck ||
        state_ == LinkState::Ready) {
        fail(in.error == TlsError::BadKey ? LinkDown::BadKey : LinkDown::Protocol, std::nullopt,
             false, in.detail, out);
    }
}

void AgentLinkFsm::on(const link_in::FrameDecoded& in, Actions& out) {
    Message m = in.message;
    if (state_ == LinkState::AwaitAck) {
        on_await_ack_frame(std::move(m), out);
    } else if (state_ == LinkState::Ready) {
        on_ready_frame(std::move(m), out);
    }
}

void AgentLinkFsm::on_await_ack_frame(Message&& m, Actions& out) {
    if (const auto* ack = std::get_if<HelloAck>(&m)) {
        if (ack->version < kMinProtocolVersion || ack->version > kProtocolVersion) {
            fail(LinkDown::Version, GoodbyeReason::Version, false,
                 fmt::format("relay chose protocol version {}, this agent speaks {}..{}",
                             ack->version, kMinProtocolVersion, kProtocolVersion),
                 out);
            return;
        }
        state_ = LinkState::Ready;
        heartbeat_ms_ = negotiate_heartbeat_ms(ack->heartbeat_ms);
        out.emplace_back(link_do::CancelTimer{LinkTimer::Deadline});
        // Failures are forgotten only once Ready has lasted: a relay that
        // accepts and then drops us at once must still see growing delays.
        out.emplace_back(link_do::ArmTimer{LinkTimer::Stable, kLinkStableAfter});
        out.emplace_back(link_do::Connected{ack->version, ack->software_version, heartbeat_ms_});
        out.emplace_back(link_do::Send{config_});
        if (draining_) {
            out.emplace_back(link_do::Send{AgentState{true}});
        }
        return;
    }
    if (const auto* g = std::get_if<Goodbye>(&m)) {
        fail(from_goodbye(g->reason), std::nullopt, true,
             fmt::format("relay refused us: {}", g->message), out);
        return;
    }
    fail(LinkDown::Protocol, GoodbyeReason::ProtocolError, false,
         fmt::format("expected HELLO_ACK, got {}", to_string(type_of(m))), out);
}

void AgentLinkFsm::on_ready_frame(Message&& m, Actions& out) {
    if (auto* oc = std::get_if<OpenChannels>(&m)) {
        if (!oc->tokens.empty()) {
            out.emplace_back(link_do::DialChannels{std::move(oc->tokens)});
        }
        return;
    }
    if (auto* cr = std::get_if<ConfigResult>(&m)) {
        out.emplace_back(link_do::ReportConfigResult{std::move(*cr)});
        return;
    }
    if (std::holds_alternative<Heartbeat>(m)) {
        return;  // receiving it already refreshed last_rx
    }
    if (auto* r = std::get_if<OutboundResult>(&m)) {
        // Only Ready links carry requests; the agent drops a result for a
        // request_id it does not have open (answered late, or never asked).
        out.emplace_back(link_do::OutboundAnswer{*r});
        return;
    }
    if (const auto* g = std::get_if<Goodbye>(&m)) {
        fail(from_goodbye(g->reason), std::nullopt, true,
             fmt::format("relay said goodbye: {}", g->message), out);
        return;
    }
    fail(LinkDown::Protocol, GoodbyeReason::ProtocolError, false,
         fmt::format("unexpected {} from relay", to_string(type_of(m))), out);
}

void AgentLinkFsm::on(const link_in::DecodeError& in, Actions& out) {
    if (state_ == LinkState::AwaitAck || state_ == LinkState::Ready) {
        fail(in.reason == GoodbyeReason::Version ? LinkDown::Version : LinkDown::Protocol,
             in.reason, false, in.detail, out);
    }
}

void AgentLinkFsm::on(const link_in::PeerEof& /*in*/, Actions& out) {
    if (state_ == LinkState::Handshaking || state_ == LinkState::AwaitAck ||
        state_ == LinkState::Ready) {
        fail(LinkDown::Closed, std::nullopt, false, "relay closed the control channel", out);
    }
}

void AgentLinkFsm::on(const link_in::WriteFailed& in, Actions& out) {
    if (state_ == LinkState::Handshaking || state_ == LinkState::AwaitAck ||
        state_ == LinkState::Ready) {
        fail(LinkDown::Io, std::nullopt, false, fmt::format("write to relay: {}", in.detail), out);
    }
}

void AgentLinkFsm::on(const link_in::ReadFailed& in, Actions& out) {
    if (state_ == LinkState::AwaitAck || state_ == LinkState::Ready) {
        fail(LinkDown::Io, std::nullopt, false, fmt::format("read from relay: {}", in.detail), out);
    }
}

void AgentLinkFsm::on(const link_in::ConnectDeadline& /*in*/, Actions& out) {
    if (state_ == LinkState::Connecting || state_ == LinkState::Handshaking ||
        state_ == LinkState::AwaitAck) {
        fail(LinkDown::Timeout, GoodbyeReason::Timeout, false,
             fmt::format("no HELLO_ACK within {} s", kLinkConnectTimeout.count() / 1000), out);
    }
}

void AgentLinkFsm::on(const link_in::BackoffElapsed& /*in*/, Actions& out) {
    if (state_ == LinkState::Backoff && wanted_) {
        connect(out);
    }
}

void AgentLinkFsm::on(const link_in::ReadyStable& /*in*/, Actions& /*out*/) {
    if (state_ == LinkState::Ready) {
        backoff_.reset();
    }
}

void AgentLinkFsm::on(const link_in::Tick& in, Actions& out) {
    if (state_ != LinkState::Ready) {
        return;  // before Ready the Deadline timer bounds silence
    }
    const auto hb = std::chrono::milliseconds(heartbeat_ms_);
    if (in.now - in.last_rx > hb * kDeadAfterIntervals) {
        fail(LinkDown::Timeout, GoodbyeReason::Timeout, false,
             fmt::format("relay silent for {} heartbeat intervals of {} ms", kDeadAfterIntervals,
                         heartbeat_ms_),
             out);
        return;
    }
    if (in.now - in.last_tx >= hb) {
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(in.now.time_since_epoch());
        out.emplace_back(link_do::Send{Heartbeat{static_cast<uint64_t>(ms.count())}});
    }
}

void AgentLinkFsm::on(const link_in::NewConfig& in, Actions& out) {
    config_ = in.config;
    if (state_ == LinkState::Ready) {
        out.emplace_back(link_do::Send{config_});
    }
}

void AgentLinkFsm::on(const link_in::SetDraining& in, Actions& out) {
    if (in.draining == draining_) {
        return;  // the relay already knows (or will be told after HELLO_ACK)
    }
    draining_ = in.draining;
    if (state_ == LinkState::Ready) {
        out.emplace_back(link_do::Send{AgentState{draining_}});
    }
}

}  // namespace sp::control
