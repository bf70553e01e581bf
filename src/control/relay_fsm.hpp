// SPDX-License-Identifier: Apache-2.0
// The relay's per-control-connection state machine (control-protocol.md
// section 5.1) as pure code: inputs in, a list of actions out. No socket, no
// clock, no log: the relay's AgentSession feeds it what happened and carries
// out what it returns, in order. Table-tested in relay_fsm_test.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "control/frame.hpp"
#include "control/tls.hpp"

namespace sp::control {

/// Agent names (HELLO agent_name): 1-64 characters of [A-Za-z0-9._-], the
/// rule agent.toml's `name` already follows. Anything else is refused before
/// the name is logged or compared, so a journal field never holds control
/// bytes from a peer.
inline constexpr size_t kMaxAgentName = 64;
[[nodiscard]] bool valid_agent_name(std::string_view name) noexcept;

/// The states of section 5.1. Classification happens before a connection
/// becomes a control connection, so it is not one of them.
enum class RelayState : uint8_t { AwaitTls, AwaitHello, Ready, Closing, Closed };
[[nodiscard]] std::string_view to_string(RelayState s) noexcept;

/// The event logged when a control connection ends.
enum class CloseEvent : uint8_t {
    None,               // nothing to report (shutdown before the agent was known)
    AgentRejected,      // refused: never reached Ready, or its key was revoked
    AgentDisconnected,  // was Ready, now gone
};

/// The REASON of that event. The first nine are GoodbyeReason's names.
enum class CloseReason : uint8_t {
    Shutdown,
    Reload,
    BadKey,
    Protocol,
    Version,
    Timeout,
    Replaced,
    NotAllowed,
    Internal,
    Closed,            // the peer closed, or the socket failed, without a GOODBYE
    HandshakeTimeout,  // no HELLO within handshake_timeout_ms of accept
    NameConflict,      // the name is held by a connection with another peer identity
    KeyRemoved,        // Ready, and a reload removed or changed its key (GOODBYE bad-key)
};
/// "shutdown" ... "internal" as GoodbyeReason, "closed", "handshake-timeout",
/// "name-conflict", "key-removed".
[[nodiscard]] std::string_view to_string(CloseReason r) noexcept;
[[nodiscard]] CloseReason close_reason_of(GoodbyeReason r) noexcept;

/// Inputs: what the session saw. Each is one row group of the table test.
namespace relay_in {
struct TlsDone {
    std::string identity;  // PSK identity or certificate CN
};
struct TlsFailed {
    TlsFailure failure = TlsFailure::Other;
    std::string reason;  // TlsResult::reason, already "TLS handshake: ..."
};
struct FrameDecoded {
    Message message;
};
struct DecodeError {
    GoodbyeReason reason = GoodbyeReason::ProtocolError;
    std::string error;
};
struct PeerEof {};
struct WriteFailed {
    std::string error;
};
struct HandshakeTimeout {};
/// About once a second. Times are passed in, never read, so tests choose them.
struct Tick {
    std::chrono::steady_clock::time_point now;
    std::chrono::steady_clock::time_point last_rx;
    std::chrono::steady_clock::time_point last_tx;
};
/// The answer to a Claim action (AgentDirectory::claim): the name is ours
/// (free, or taken over from an older connection of the same identity) ...
struct ClaimGranted {};
/// ... or held by a connection with another identity.
struct NameConflict {};
struct KeyRevoked {};      // reload removed or changed this connection's key
struct AddressDenied {};   // reload's allow_agents/deny_agents no longer admit its address
struct Reauthenticate {};  // reload changed the authentication mode or the agent CA
struct Replaced {};        // a newer connection with the same name and identity won
struct Shutdown {          // SIGTERM / SIGINT, or a binary upgrade handed over
    bool upgrade = false;  // GOODBYE(reload): the agent reconnects to the successor
};
struct Flushed {};        // Closing: GOODBYE and close_notify are out
struct LingerExpired {};  // Closing: kClosingLinger passed first
}  // namespace relay_in

using RelayInput =
    std::variant<relay_in::TlsDone, relay_in::TlsFailed, relay_in::FrameDecoded,
                 relay_in::DecodeError, relay_in::PeerEof, relay_in::WriteFailed,
                 relay_in::HandshakeTimeout, relay_in::Tick, relay_in::ClaimGranted,
                 relay_in::NameConflict, relay_in::KeyRevoked, relay_in::AddressDenied,
                 relay_in::Reauthenticate, relay_in::Replaced, relay_in::Shutdown,
                 relay_in::Flushed, relay_in::LingerExpired>;

/// Actions: what the session must do, in the order given.
namespace relay_out {
/// Encode and send; a failed send is fed back as WriteFailed.
struct Send {
    Message message;
};
/// Queue GOODBYE, then close_notify; keep flushing until Flushed or the
/// linger ends. Always followed by Close.
struct Goodbye {
    GoodbyeReason reason = GoodbyeReason::Shutdown;
    std::string text;
};
/// Ask the AgentDirectory for `name`; feed back ClaimGranted or NameConflict
/// (and Replaced to the connection it names, if any) before anything else.
struct Claim {
    std::string name;
    std::string identity;
};
/// The agent is Ready: register it, report agent-connected.
struct Connected {
    std::string name;
    std::string identity;
    std::string software_version;
    uint16_t pool = 0;
    uint32_t heartbeat_ms = kDefaultHeartbeatMs;
};
/// Apply the agent's desired listener set and answer with CONFIG_RESULT.
struct ApplyConfig {
    Config config;
};
/// Send one OPEN_CHANNELS with `count` fresh tokens (1..kMaxTokens).
struct IssueTokens {
    unsigned count = 0;
};
/// Log backend-failed for the session the agent names.
struct ReportBackendFailed {
    BackendFailed failure;
};
/// The agent said it is draining (true) or takes sessions again (false):
/// tell the workers (pairing prefers agents not draining) and log
/// agent-drain / agent-resume. Only on a change; a connection starts not
/// draining.
struct SetDraining {
    bool draining = false;
};
/// OUTBOUND_REQUEST (forward proxy): the relay checks, resolves and
/// connects off this thread, then answers with exactly one OUTBOUND_RESULT
/// for `request.request_id` (relay/outbound.hpp). The machine keeps no
/// state for it: an answer for a connection that left Ready is dropped.
struct StartOutbound {
    OutboundRequest request;
};
/// The connection is over: log `event` with `reason`, and, when `was_ready`,
/// undo Connected (directory, listeners, tokens, idle channels). The state
/// is then Closing (keep the socket until Flushed / LingerExpired) or Closed
/// (drop it now).
struct Close {
    CloseEvent event = CloseEvent::None;
    CloseReason reason = CloseReason::Closed;
    std::string text;
    bool was_ready = false;
};
}  // namespace relay_out

using RelayAction =
    std::variant<relay_out::Send, relay_out::Goodbye, relay_out::Claim, relay_out::Connected,
                 relay_out::ApplyConfig, relay_out::IssueTokens, relay_out::ReportBackendFailed,
                 relay_out::SetDraining, relay_out::StartOutbound, relay_out::Close>;

/// How long Closing may wait for GOODBYE and close_notify to leave.
inline constexpr std::chrono::milliseconds kClosingLinger{1000};

class RelayFsm final {
public:
    struct Options {
        uint64_t connection_id = 0;    // HELLO_ACK connection_id
        std::string software_version;  // HELLO_ACK software_version
    };

    explicit RelayFsm(Options options) : options_(std::move(options)) {}

    /// Feeds one input; returns the actions to run, in order. Inputs that
    /// have no meaning in the current state return nothing and change
    /// nothing (e.g. Tick before Ready, anything after Closed).
    [[nodiscard]] std::vector<RelayAction> on(RelayInput input);

    [[nodiscard]] RelayState state() const noexcept { return state_; }
    /// Set from TlsDone on.
    [[nodiscard]] const std::string& identity() const noexcept { return identity_; }
    /// Set from a valid HELLO on.
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] uint16_t pool() const noexcept { return pool_; }
    /// The negotiated interval once Ready.
    [[nodiscard]] uint32_t heartbeat_ms() const noexcept { return heartbeat_ms_; }
    /// The agent's last AGENT_STATE (false until one says otherwise).
    [[nodiscard]] bool draining() const noexcept { return draining_; }

private:
    std::vector<RelayAction> on_tls(RelayInput& input);
    std::vector<RelayAction> on_await_hello(RelayInput& input);
    std::vector<RelayAction> on_ready(RelayInput& input);
    std::vector<RelayAction> on_message(Message& m);
    std::vector<RelayAction> on_hello(const Hello& h);
    /// GOODBYE + Close, state Closing.
    std::vector<RelayAction> leave(GoodbyeReason goodbye, CloseEvent event, CloseReason reason,
                                   std::string text);
    /// Close only (nothing can be sent), state Closed.
    std::vector<RelayAction> drop(CloseEvent event, CloseReason reason, std::string text);

    Options options_;
    RelayState state_ = RelayState::AwaitTls;
    bool claim_pending_ = false;
    std::string identity_;
    std::string name_;
    std::string software_;
    uint16_t pool_ = 0;
    uint8_t version_ = kProtocolVersion;
    uint32_t heartbeat_ms_ = kDefaultHeartbeatMs;
    bool draining_ = false;
};

}  // namespace sp::control
