// SPDX-License-Identifier: Apache-2.0
// The agent's state machine for one relay link (protocol doc section 5.2),
// as pure code: inputs in (socket outcomes, decoded frames, timers, ticks),
// a list of actions out (connect, send, close, arm a timer, dial channels,
// emit an event). No sockets, no clock reads, no logging: the caller passes
// the time in and carries the actions out, so the doc's table is a unit test.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "control/backoff.hpp"
#include "control/frame.hpp"

namespace sp::control {

/// Doc section 5.2 states; Idle is "not wanted" (stopped, or a standby while
/// a primary is up).
enum class LinkState : uint8_t { Idle, Connecting, Handshaking, AwaitAck, Ready, Backoff };
[[nodiscard]] std::string_view to_string(LinkState s) noexcept;

/// Why the agent itself ends a link that is wanted no longer.
enum class StopReason : uint8_t { Shutdown, Standby, Reload };

/// REASON of relay-disconnected: why a link left Ready or an attempt failed.
/// The first nine are the relay's GOODBYE reasons, spelled as on the wire.
enum class LinkDown : uint8_t {
    Shutdown,    // relay or agent stopping
    Reload,      // a reload on either side restarted the link
    BadKey,      // TLS refused the key/certificate, or GOODBYE(bad-key)
    Protocol,    // undecodable or unexpected frame
    Version,     // no common protocol version
    Timeout,     // connect + TLS + HELLO_ACK over 10 s, or relay silent 3 intervals
    Replaced,    // the relay took a newer connection of this agent
    NotAllowed,  // allow_agents/deny_agents on the relay
    Internal,    // relay or agent out of a resource
    Standby,     // a primary relay is up again
    Connect,     // resolve or TCP connect failed
    Closed,      // relay closed the connection without GOODBYE
    Io,          // a read or write on the control channel failed
};
[[nodiscard]] std::string_view to_string(LinkDown r) noexcept;

/// TLS outcome classes the link cares about (tls.hpp TlsFailure folded:
/// BadKey stays, everything else is Protocol).
enum class TlsError : uint8_t { BadKey, Protocol };

enum class LinkTimer : uint8_t {
    Deadline,  // connect + TLS + HELLO_ACK (kLinkConnectTimeout)
    Backoff,   // the retry delay
    Stable,    // Ready long enough to forget past failures (kLinkStableAfter)
};

inline constexpr std::chrono::milliseconds kLinkConnectTimeout{10000};
inline constexpr std::chrono::milliseconds kLinkStableAfter{30000};
inline constexpr std::chrono::milliseconds kLinkBackoffInitial{500};
inline constexpr std::chrono::milliseconds kLinkBackoffCap{30000};

using LinkClock = std::chrono::steady_clock;

/// Inputs. The caller feeds each outcome exactly once, in the order it saw them.
namespace link_in {
struct Start {};  // the policy wants this link
struct Stop {
    StopReason reason;
};
struct ConnectOk {};
struct ConnectFailed {
    int err = 0;  // -errno; -EHOSTUNREACH when the name did not resolve
    std::string detail;
};
struct TlsDone {};
struct TlsFailed {
    TlsError error = TlsError::Protocol;
    std::string detail;
};
struct FrameDecoded {
    Message message;
};
struct DecodeError {
    GoodbyeReason reason = GoodbyeReason::ProtocolError;  // what decode() said to answer
    std::string detail;
};
struct PeerEof {};
struct WriteFailed {  // a Send or a flush failed: the socket or the output bound
    std::string detail;
};
struct ReadFailed {  // the socket failed under TLS (reset, not an alert)
    std::string detail;
};
struct ConnectDeadline {};
struct BackoffElapsed {};
struct ReadyStable {};  // the Stable timer fired
struct Tick {
    LinkClock::time_point now;
    LinkClock::time_point last_rx;  // FramedPeer::last_rx()
    LinkClock::time_point last_tx;
};
struct NewConfig {  // a reload produced this CONFIG (generation already bumped)
    Config config;
};
/// The operator drained (true) or resumed (false) the agent. Remembered in
/// every state; told to the relay in Ready, and after every HELLO_ACK while
/// draining (a new connection starts not draining on the relay's side).
struct SetDraining {
    bool draining = false;
};
}  // namespace link_in

using LinkInput =
    std::variant<link_in::Start, link_in::Stop, link_in::ConnectOk, link_in::ConnectFailed,
                 link_in::TlsDone, link_in::TlsFailed, link_in::FrameDecoded, link_in::DecodeError,
                 link_in::PeerEof, link_in::WriteFailed, link_in::ReadFailed,
                 link_in::ConnectDeadline, link_in::BackoffElapsed, link_in::ReadyStable,
                 link_in::Tick, link_in::NewConfig, link_in::SetDraining>;

/// Actions, to be carried out in list order. Contract for the caller: when
/// carrying out a Send fails, drop the rest of the list and feed
/// WriteFailed; lists are built so that Send comes after every other action
/// of the same step, except a closing Goodbye/Close.
namespace link_do {
struct StartConnect {};  // resolve the relay name, non-blocking connect
struct StartTls {};      // handshake on the connected socket
struct Send {
    Message message;
};
struct Goodbye {  // queue GOODBYE and close_notify, best effort (then Close follows)
    GoodbyeReason reason;
    std::string message;
};
struct Close {};   // drop the socket/TLS/peer; idle data channels of the link die with it
struct ArmTimer {  // (re)arm the one timer of this kind
    LinkTimer timer;
    std::chrono::milliseconds delay;
};
struct CancelTimer {
    LinkTimer timer;
};
struct DialChannels {  // one data channel per token
    std::vector<Token> tokens;
};
struct ReportConfigResult {  // config-applied / config-rejected events
    ConfigResult result;
};
struct OutboundAnswer {  // an OUTBOUND_RESULT: the agent matches it to its request, or drops it
    OutboundResult result;
};
struct Connected {  // event relay-connected
    uint8_t version = 0;
    std::string software_version;
    uint32_t heartbeat_ms = 0;
};
struct Disconnected {  // event relay-disconnected
    LinkDown reason = LinkDown::Closed;
    bool by_relay = false;  // the relay sent GOODBYE
    bool error = false;     // log as error: retrying alone cannot fix it
    std::optional<std::chrono::milliseconds> retry_in;  // nullopt: not retried (stopped)
    std::string detail;
};
}  // namespace link_do

using LinkAction =
    std::variant<link_do::StartConnect, link_do::StartTls, link_do::Send, link_do::Goodbye,
                 link_do::Close, link_do::ArmTimer, link_do::CancelTimer, link_do::DialChannels,
                 link_do::ReportConfigResult, link_do::OutboundAnswer, link_do::Connected,
                 link_do::Disconnected>;

class AgentLinkFsm final {
public:
    /// `hello` is sent after every TLS handshake; `config` after every
    /// HELLO_ACK; `seed` drives the backoff jitter.
    AgentLinkFsm(Hello hello, Config config, uint64_t seed);

    /// Feeds one input; returns what to do, in order. Inputs that make no
    /// sense in the current state (a stale timer, a frame after Close) are
    /// ignored and return nothing.
    [[nodiscard]] std::vector<LinkAction> step(const LinkInput& in);

    [[nodiscard]] LinkState state() const noexcept { return state_; }
    /// The interval agreed in HELLO_ACK (valid in Ready).
    [[nodiscard]] uint32_t heartbeat_ms() const noexcept { return heartbeat_ms_; }
    /// Consecutive failures the next backoff delay is based on.
    [[nodiscard]] unsigned failures() const noexcept { return backoff_.attempt(); }
    [[nodiscard]] bool wanted() const noexcept { return wanted_; }
    [[nodiscard]] bool draining() const noexcept { return draining_; }

private:
    using Actions = std::vector<LinkAction>;
    void on(const link_in::Start& in, Actions& out);
    void on(const link_in::Stop& in, Actions& out);
    void on(const link_in::ConnectOk& in, Actions& out);
    void on(const link_in::ConnectFailed& in, Actions& out);
    void on(const link_in::TlsDone& in, Actions& out);
    void on(const link_in::TlsFailed& in, Actions& out);
    void on(const link_in::FrameDecoded& in, Actions& out);
    void on(const link_in::DecodeError& in, Actions& out);
    void on(const link_in::PeerEof& in, Actions& out);
    void on(const link_in::WriteFailed& in, Actions& out);
    void on(const link_in::ReadFailed& in, Actions& out);
    void on(const link_in::ConnectDeadline& in, Actions& out);
    void on(const link_in::BackoffElapsed& in, Actions& out);
    void on(const link_in::ReadyStable& in, Actions& out);
    void on(const link_in::Tick& in, Actions& out);
    void on(const link_in::NewConfig& in, Actions& out);
    void on(const link_in::SetDraining& in, Actions& out);

    void connect(Actions& out);
    void on_ready_frame(Message&& m, Actions& out);
    void on_await_ack_frame(Message&& m, Actions& out);
    /// Leaves a live state for Backoff: optional GOODBYE, Close, timers,
    /// the event. `goodbye` nullopt: the socket is not worth a GOODBYE.
    void fail(LinkDown reason, std::optional<GoodbyeReason> goodbye, bool by_relay,
              std::string detail, Actions& out);
    Hello hello_;
    Config config_;
    Backoff backoff_;
    LinkState state_ = LinkState::Idle;
    bool wanted_ = false;
    bool draining_ = false;
    uint32_t heartbeat_ms_ = kDefaultHeartbeatMs;
};

}  // namespace sp::control
