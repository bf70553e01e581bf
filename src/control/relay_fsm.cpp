// SPDX-License-Identifier: Apache-2.0
#include "control/relay_fsm.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace sp::control {

namespace {

template <class... Fs>
struct Overloaded : Fs... {
    using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

std::string versions_text(const Hello& h) {
    return fmt::format("agent speaks protocol {}-{}, relay {}-{}", h.min_version, h.max_version,
                       kMinProtocolVersion, kProtocolVersion);
}

}  // namespace

bool valid_agent_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > kMaxAgentName) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
    });
}

std::string_view to_string(RelayState s) noexcept {
    switch (s) {
        case RelayState::AwaitTls:
            return "AwaitTls";
        case RelayState::AwaitHello:
            return "AwaitHello";
        case RelayState::Ready:
            return "Ready";
        case RelayState::Closing:
            return "Closing";
        case RelayState::Closed:
            return "Closed";
    }
    return "?";
}

std::string_view to_string(CloseReason r) noexcept {
    switch (r) {
        case CloseReason::Shutdown:
            return "shutdown";
        case CloseReason::Reload:
            return "reload";
        case CloseReason::BadKey:
            return "bad-key";
        case CloseReason::Protocol:
            return "protocol";
        case CloseReason::Version:
            return "version";
        case CloseReason::Timeout:
            return "timeout";
        case CloseReason::Replaced:
            return "replaced";
        case CloseReason::NotAllowed:
            return "not-allowed";
        case CloseReason::Internal:
            return "internal";
        case CloseReason::Closed:
            return "closed";
        case CloseReason::HandshakeTimeout:
            return "handshake-timeout";
        case CloseReason::NameConflict:
            return "name-conflict";
        case CloseReason::KeyRemoved:
            return "key-removed";
    }
    return "?";
}

CloseReason close_reason_of(GoodbyeReason r) noexcept {
    switch (r) {
        case GoodbyeReason::Shutdown:
            return CloseReason::Shutdown;
        case GoodbyeReason::Reload:
            return CloseReason::Reload;
        case GoodbyeReason::BadKey:
            return CloseReason::BadKey;
        case GoodbyeReason::ProtocolError:
            return CloseReason::Protocol;
        case GoodbyeReason::Version:
            return CloseReason::Version;
        case GoodbyeReason::Timeout:
            return CloseReason::Timeout;
        case GoodbyeReason::Replaced:
            return CloseReason::Replaced;
        case GoodbyeReason::NotAllowed:
            return CloseReason::NotAllowed;
        case GoodbyeReason::Internal:
            return CloseReason::Internal;
    }
    return CloseReason::Protocol;
}

std::vector<RelayAction> RelayFsm::leave(GoodbyeReason goodbye, CloseEvent event,
                                         CloseReason reason, std::string text) {
    const bool was_ready = state_ == RelayState::Ready;
    state_ = RelayState::Closing;
    std::vector<RelayAction> out;
    out.emplace_back(relay_out::Goodbye{goodbye, text});
    out.emplace_back(relay_out::Close{event, reason, std::move(text), was_ready});
    return out;
}

std::vector<RelayAction> RelayFsm::drop(CloseEvent event, CloseReason reason, std::string text) {
    const bool was_ready = state_ == RelayState::Ready;
    state_ = RelayState::Closed;
    std::vector<RelayAction> out;
    out.emplace_back(relay_out::Close{event, reason, std::move(text), was_ready});
    return out;
}

std::vector<RelayAction> RelayFsm::on(RelayInput input) {
    switch (state_) {
        case RelayState::AwaitTls:
            return on_tls(input);
        case RelayState::AwaitHello:
            return on_await_hello(input);
        case RelayState::Ready:
            return on_ready(input);
        case RelayState::Closing:
            if (std::holds_alternative<relay_in::Flushed>(input) ||
                std::holds_alternative<relay_in::LingerExpired>(input)) {
                state_ = RelayState::Closed;
            }
            return {};
        case RelayState::Closed:
            return {};
    }
    return {};
}

std::vector<RelayAction> RelayFsm::on_tls(RelayInput& input) {
    using CE = CloseEvent;
    using CR = CloseReason;
    return std::visit(
        Overloaded{
            [&](relay_in::TlsDone& d) -> std::vector<RelayAction> {
                identity_ = std::move(d.identity);
                state_ = RelayState::AwaitHello;
                return {};
            },
            [&](relay_in::TlsFailed& f) {
                return drop(CE::AgentRejected,
                            f.failure == TlsFailure::BadKey ? CR::BadKey : CR::Protocol,
                            std::move(f.reason));
            },
            [&](relay_in::PeerEof&) {
                return drop(CE::AgentRejected, CR::Protocol, "closed during the TLS handshake");
            },
            [&](relay_in::WriteFailed& w) {
                return drop(CE::AgentRejected, CR::Protocol, std::move(w.error));
            },
            [&](relay_in::HandshakeTimeout&) {
                return drop(CE::AgentRejected, CR::HandshakeTimeout,
                            "no TLS handshake within handshake_timeout_ms");
            },
            [&](relay_in::AddressDenied&) {
                // No TLS yet, so no GOODBYE: closed as the front door would
                // have closed it under the new rules.
                return drop(CE::AgentRejected, CR::NotAllowed,
                            "address no longer allowed by allow_agents/deny_agents (reload)");
            },
            [&](relay_in::Reauthenticate&) {
                // Its handshake ran under the old credentials: closed, and
                // the agent's retry meets the new ones.
                return drop(CE::None, CR::Reload, "a reload changed how agents authenticate");
            },
            [&](relay_in::Shutdown&) { return drop(CE::None, CR::Shutdown, "relay stopping"); },
            [](auto&) -> std::vector<RelayAction> { return {}; },
        },
        input);
}

std::vector<RelayAction> RelayFsm::on_await_hello(RelayInput& input) {
    using CE = CloseEvent;
    using CR = CloseReason;
    return std::visit(
        Overloaded{
            [&](relay_in::FrameDecoded& f) -> std::vector<RelayAction> {
                if (const auto* h = std::get_if<Hello>(&f.message);
                    h != nullptr && !claim_pending_) {
                    return on_hello(*h);
                }
                if (const auto* g = std::get_if<Goodbye>(&f.message); g != nullptr) {
                    // An agent stopping before it was known: nothing to report.
                    return drop(CE::None, close_reason_of(g->reason), g->message);
                }
                return leave(GoodbyeReason::ProtocolError, CE::AgentRejected, CR::Protocol,
                             fmt::format("expected HELLO, got {}", to_string(type_of(f.message))));
            },
            [&](relay_in::ClaimGranted&) -> std::vector<RelayAction> {
                if (!claim_pending_) {
                    return {};
                }
                claim_pending_ = false;
                state_ = RelayState::Ready;
                std::vector<RelayAction> out;
                out.emplace_back(relay_out::Send{HelloAck{version_, options_.software_version,
                                                          heartbeat_ms_, options_.connection_id}});
                out.emplace_back(
                    relay_out::Connected{name_, identity_, software_, pool_, heartbeat_ms_});
                if (pool_ > 0) {
                    out.emplace_back(relay_out::IssueTokens{
                        static_cast<unsigned>(std::min<size_t>(pool_, kMaxTokens))});
                }
                return out;
            },
            [&](relay_in::NameConflict&) -> std::vector<RelayAction> {
                if (!claim_pending_) {
                    return {};
                }
                claim_pending_ = false;
                // NotAllowed, not a new GoodbyeReason: the wire stays version
                // 1, and the agent treats it as "retrying soon cannot help".
                return leave(GoodbyeReason::NotAllowed, CE::AgentRejected, CR::NameConflict,
                             fmt::format("agent name \"{}\" is in use by a connection with "
                                         "another identity",
                                         name_));
            },
            [&](relay_in::DecodeError& d) {
                return leave(d.reason, CE::AgentRejected,
                             d.reason == GoodbyeReason::Version ? CR::Version : CR::Protocol,
                             std::move(d.error));
            },
            [&](relay_in::PeerEof&) {
                return drop(CE::AgentRejected, CR::Protocol,
                            "agent closed the control channel before HELLO");
            },
            [&](relay_in::WriteFailed& w) {
                return drop(CE::AgentRejected, CR::Protocol, std::move(w.error));
            },
            [&](relay_in::HandshakeTimeout&) {
                return leave(GoodbyeReason::Timeout, CE::AgentRejected, CR::HandshakeTimeout,
                             "no HELLO within handshake_timeout_ms");
            },
            [&](relay_in::KeyRevoked&) {
                return leave(GoodbyeReason::BadKey, CE::AgentRejected, CR::BadKey,
                             "key removed or changed by reload");
            },
            [&](relay_in::Reauthenticate&) {
                return leave(GoodbyeReason::Reload, CE::AgentRejected, CR::Reload,
                             "a reload changed how agents authenticate: reconnect");
            },
            [&](relay_in::AddressDenied&) {
                return leave(GoodbyeReason::NotAllowed, CE::AgentRejected, CR::NotAllowed,
                             "address no longer allowed by allow_agents/deny_agents (reload)");
            },
            [&](relay_in::Shutdown& s) {
                return s.upgrade ? leave(GoodbyeReason::Reload, CE::None, CR::Shutdown,
                                         "relay upgraded: reconnect to the new process")
                                 : leave(GoodbyeReason::Shutdown, CE::None, CR::Shutdown,
                                         "relay stopping");
            },
            [](auto&) -> std::vector<RelayAction> { return {}; },
        },
        input);
}

std::vector<RelayAction> RelayFsm::on_hello(const Hello& h) {
    using CE = CloseEvent;
    using CR = CloseReason;
    const auto version = negotiate_version(h);
    if (!version) {
        return leave(GoodbyeReason::Version, CE::AgentRejected, CR::Version, versions_text(h));
    }
    if (!valid_agent_name(h.agent_name)) {
        // The name is not echoed: it may hold bytes no log should carry.
        return leave(GoodbyeReason::ProtocolError, CE::AgentRejected, CR::Protocol,
                     fmt::format("invalid agent name ({} bytes): it must be 1-{} characters "
                                 "of letters, digits, '-', '_' or '.'",
                                 h.agent_name.size(), kMaxAgentName));
    }
    version_ = *version;
    name_ = h.agent_name;
    software_ = h.software_version;
    pool_ = h.pool_size;
    heartbeat_ms_ = negotiate_heartbeat_ms(h.heartbeat_ms);
    claim_pending_ = true;
    std::vector<RelayAction> out;
    out.emplace_back(relay_out::Claim{name_, identity_});
    return out;
}

std::vector<RelayAction> RelayFsm::on_ready(RelayInput& input) {
    using CE = CloseEvent;
    using CR = CloseReason;
    return std::visit(
        Overloaded{
            [&](relay_in::FrameDecoded& f) { return on_message(f.message); },
            [&](relay_in::DecodeError& d) {
                return leave(d.reason, CE::AgentDisconnected,
                             d.reason == GoodbyeReason::Version ? CR::Version : CR::Protocol,
                             std::move(d.error));
            },
            [&](relay_in::PeerEof&) {
                return drop(CE::AgentDisconnected, CR::Closed,
                            "agent closed the control channel without GOODBYE");
            },
            [&](relay_in::WriteFailed& w) {
                return drop(CE::AgentDisconnected, CR::Closed, std::move(w.error));
            },
            [&](relay_in::Tick& t) -> std::vector<RelayAction> {
                const auto hb = std::chrono::milliseconds(heartbeat_ms_);
                if (t.now - t.last_rx > hb * kDeadAfterIntervals) {
                    return leave(
                        GoodbyeReason::Timeout, CE::AgentDisconnected, CR::Timeout,
                        fmt::format("agent silent for {} heartbeat intervals ({} ms)",
                                    kDeadAfterIntervals, kDeadAfterIntervals * heartbeat_ms_));
                }
                if (t.now - t.last_tx >= hb) {
                    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        t.now.time_since_epoch());
                    std::vector<RelayAction> out;
                    out.emplace_back(relay_out::Send{Heartbeat{static_cast<uint64_t>(ms.count())}});
                    return out;
                }
                return {};
            },
            [&](relay_in::Reauthenticate&) {
                return leave(GoodbyeReason::Reload, CE::AgentDisconnected, CR::Reload,
                             "a reload changed how agents authenticate: reconnect");
            },
            [&](relay_in::KeyRevoked&) {
                // It was connected: the admin sees it go (agent-disconnected,
                // paired with its agent-connected), not as a stranger refused.
                return leave(GoodbyeReason::BadKey, CE::AgentDisconnected, CR::KeyRemoved,
                             "key removed or changed by reload");
            },
            [&](relay_in::AddressDenied&) {
                return leave(GoodbyeReason::NotAllowed, CE::AgentDisconnected, CR::NotAllowed,
                             "address no longer allowed by allow_agents/deny_agents (reload)");
            },
            [&](relay_in::Replaced&) {
                return leave(GoodbyeReason::Replaced, CE::AgentDisconnected, CR::Replaced,
                             "replaced by a newer connection of the same agent and identity");
            },
            [&](relay_in::Shutdown& s) {
                return s.upgrade ? leave(GoodbyeReason::Reload, CE::AgentDisconnected, CR::Shutdown,
                                         "relay upgraded: reconnect to the new process")
                                 : leave(GoodbyeReason::Shutdown, CE::AgentDisconnected,
                                         CR::Shutdown, "relay stopping");
            },
            [](auto&) -> std::vector<RelayAction> { return {}; },
        },
        input);
}

std::vector<RelayAction> RelayFsm::on_message(Message& m) {
    using CE = CloseEvent;
    using CR = CloseReason;
    std::vector<RelayAction> out;
    if (auto* cfg = std::get_if<Config>(&m)) {
        out.emplace_back(relay_out::ApplyConfig{std::move(*cfg)});
        return out;
    }
    if (std::holds_alternative<Heartbeat>(m)) {
        return out;  // liveness is last_rx, which any frame moves
    }
    if (auto* bf = std::get_if<BackendFailed>(&m)) {
        out.emplace_back(relay_out::ReportBackendFailed{std::move(*bf)});
        return out;
    }
    if (const auto* st = std::get_if<AgentState>(&m)) {
        if (st->draining != draining_) {
            draining_ = st->draining;
            out.emplace_back(relay_out::SetDraining{draining_});
        }
        return out;
    }
    if (auto* o = std::get_if<OutboundRequest>(&m)) {
        // Every check (allow list, limits, DNS, connect) needs the relay's
        // configuration or a clock, so none is made here.
        out.emplace_back(relay_out::StartOutbound{std::move(*o)});
        return out;
    }
    if (auto* g = std::get_if<Goodbye>(&m)) {
        return drop(CE::AgentDisconnected, close_reason_of(g->reason), std::move(g->message));
    }
    // HELLO again, or a relay -> agent message.
    return leave(GoodbyeReason::ProtocolError, CE::AgentDisconnected, CR::Protocol,
                 fmt::format("unexpected {} from agent", to_string(type_of(m))));
}

}  // namespace sp::control
