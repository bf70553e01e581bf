// SPDX-License-Identifier: Apache-2.0
// The relay<->agent wire format as a pure codec: control-channel frames, the
// data-channel hello and the binding header. No I/O, no allocation beyond the
// decoded values; src/control/docs/control-protocol.md has the byte layout.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.hpp"
#include "base/wire_limits.hpp"

namespace sp::control {

// ---- limits -----------------------------------------------------------------

inline constexpr uint8_t kProtocolVersion = 1;  // the only version this build speaks
inline constexpr uint8_t kMinProtocolVersion = 1;
inline constexpr size_t kFrameHeaderSize = 8;
// The bounds live in base/wire_limits.hpp, which the configuration checks
// against too (a config that passes --check-config must be sendable).
inline constexpr uint32_t kMaxFrame = wire::kMaxFrame;  // payload bytes, header excluded
inline constexpr size_t kMaxString = wire::kMaxString;
inline constexpr size_t kMaxName = wire::kMaxName;
inline constexpr size_t kMaxAddress = wire::kMaxAddress;
inline constexpr size_t kMaxServices = wire::kMaxServices;
inline constexpr size_t kMaxListenPerService = wire::kMaxListenPerService;
inline constexpr size_t kMaxCidrsPerList = wire::kMaxCidrsPerList;
inline constexpr size_t kMaxListeners = wire::kMaxListeners;
inline constexpr size_t kMaxListenResults = kMaxListeners;
inline constexpr size_t kMaxTokens = wire::kMaxTokens;

inline constexpr uint32_t kDefaultHeartbeatMs = 5000;
inline constexpr uint32_t kMinHeartbeatMs = 100;
// 30 s: a dead agent is noticed within kDeadAfterIntervals x this (90 s) and
// its listeners close; a longer interval would let a vanished agent hold
// public ports for many minutes (600 s allowed 30 minutes).
inline constexpr uint32_t kMaxHeartbeatMs = 30000;
inline constexpr int kDeadAfterIntervals = 3;  // a peer silent this many intervals is dead

// ---- tokens -----------------------------------------------------------------

/// A data-channel token: 256 random bits issued by the relay, single use.
using Token = std::array<uint8_t, 32>;

// ---- enums (values are wire values; unknown ones are decode errors) ---------

enum class MessageType : uint16_t {
    Hello = 1,
    HelloAck = 2,
    Config = 3,
    ConfigResult = 4,
    OpenChannels = 5,
    Heartbeat = 6,
    Goodbye = 7,
    BackendFailed = 8,
    OutboundRequest = 9,
    OutboundResult = 10,
    AgentState = 11,
};

/// Why a side closes the control channel. Names match SPEC REASON values
/// where one exists (agent-rejected: bad-key, not-allowed, protocol,
/// handshake-timeout, version).
enum class GoodbyeReason : uint16_t {
    Shutdown = 1,       // orderly stop (SIGTERM)
    Reload = 2,         // restart of this connection after a reload changed auth
    BadKey = 3,         // authentication refused (also: key removed on reload)
    ProtocolError = 4,  // malformed frame, unexpected message, bad state
    Version = 5,        // no common protocol version
    Timeout = 6,        // peer silent for kDeadAfterIntervals heartbeats / handshake
    Replaced = 7,       // a newer connection with the same agent name took over
    NotAllowed = 8,     // peer address not in allow_agents / in deny_agents
    Internal = 9,       // local resource failure; the peer should retry later
};
inline constexpr uint16_t kMaxGoodbyeReason = 9;

enum class ListenStatus : uint8_t {
    Ok = 0,
    BindFailed = 1,  // bind/listen failed; `error` has the errno
    NotAllowed = 2,  // outside the relay's allow_listen
    Conflict = 3,    // already opened by another agent with a different service
    Invalid = 4,     // the listen string or a CIDR does not parse
};
inline constexpr uint8_t kMaxListenStatus = 4;

enum class OutboundStatus : uint8_t {
    Ok = 0,             // connected; dial a data channel with `token`
    Denied = 1,         // not in the relay's [outbound] allow list
    ResolveFailed = 2,  // host name did not resolve
    ConnectFailed = 3,  // `error` has the errno
    Timeout = 4,
    Disabled = 5,  // [outbound] allow is empty on the relay
    Limit = 6,     // max_outbound_sessions (relay-wide or per agent) reached
};
inline constexpr uint8_t kMaxOutboundStatus = 6;

// ---- messages ---------------------------------------------------------------

/// agent -> relay, first frame after the TLS handshake.
struct Hello {
    uint8_t min_version = kMinProtocolVersion;
    uint8_t max_version = kProtocolVersion;
    std::string agent_name;        // <= kMaxName
    std::string software_version;  // <= kMaxName
    uint16_t pool_size = 0;        // idle data channels the agent keeps
    uint32_t heartbeat_ms = kDefaultHeartbeatMs;
    bool operator==(const Hello&) const = default;
};

/// relay -> agent, answer to HELLO when a common version exists.
struct HelloAck {
    uint8_t version = kProtocolVersion;
    std::string software_version;  // <= kMaxName
    uint32_t heartbeat_ms = kDefaultHeartbeatMs;
    uint64_t connection_id = 0;
    bool operator==(const HelloAck&) const = default;
};

struct ServiceSpec {
    std::string name;                        // <= kMaxName
    std::vector<std::string> listen;         // "IP:P" / "IP:P1-P2", <= kMaxListenPerService
    std::vector<std::string> allow_clients;  // CIDRs, <= kMaxCidrsPerList
    std::vector<std::string> deny_clients;
    uint32_t max_sessions = 0;  // 0 = unlimited
    uint32_t affinity_s = 0;
    bool operator==(const ServiceSpec&) const = default;
};

/// agent -> relay: the complete desired listener set (replaces the previous one).
struct Config {
    uint32_t generation = 0;
    std::vector<ServiceSpec> services;  // <= kMaxServices, total listen <= kMaxListeners
    bool operator==(const Config&) const = default;
};

struct ListenResult {
    std::string service;
    std::string listen;
    ListenStatus status = ListenStatus::Ok;
    int32_t error = 0;  // errno for BindFailed, else 0
    std::string message;
    bool operator==(const ListenResult&) const = default;
};

/// relay -> agent: one result per listen string of CONFIG `generation`.
struct ConfigResult {
    uint32_t generation = 0;
    std::vector<ListenResult> results;  // <= kMaxListenResults
    bool operator==(const ConfigResult&) const = default;
};

/// Keeps `r` within one frame (kMaxFrame), whatever the CONFIG it answers
/// held: messages are shortened first (on a UTF-8 boundary), then Ok results
/// are left out, then trailing results (control-protocol.md, CONFIG_RESULT).
/// Returns how many results were left out.
size_t fit_to_frame(ConfigResult& r);

/// relay -> agent: dial one data channel per token.
struct OpenChannels {
    std::vector<Token> tokens;  // 1..kMaxTokens
    bool operator==(const OpenChannels&) const = default;
};

/// both ways; sent when nothing else was sent for heartbeat_ms.
struct Heartbeat {
    uint64_t send_time_ms = 0;  // sender's CLOCK_MONOTONIC in ms (for RTT, not trusted)
    bool operator==(const Heartbeat&) const = default;
};

/// both ways; the last frame before close.
struct Goodbye {
    GoodbyeReason reason = GoodbyeReason::Shutdown;
    std::string message;  // <= kMaxString, human text
    bool operator==(const Goodbye&) const = default;
};

/// agent -> relay: the agent could not reach a backend for a session.
struct BackendFailed {
    uint64_t session_id = 0;
    int32_t error = 0;    // errno
    std::string backend;  // "ip:port", <= kMaxAddress
    bool operator==(const BackendFailed&) const = default;
};

/// agent -> relay (forward proxy): connect to host:port from the relay.
struct OutboundRequest {
    uint32_t request_id = 0;
    std::string host;  // name or IP literal, <= kMaxName
    uint16_t port = 0;
    bool operator==(const OutboundRequest&) const = default;
};

/// relay -> agent: result of an OUTBOUND_REQUEST. On Ok the agent dials a
/// data channel with `token` (all-zero otherwise).
struct OutboundResult {
    uint32_t request_id = 0;
    OutboundStatus status = OutboundStatus::Ok;
    int32_t error = 0;
    Token token{};
    bool operator==(const OutboundResult&) const = default;
};

/// agent -> relay, in Ready: whether the agent takes new sessions. Sent
/// after CONFIG when the agent is draining, and whenever the operator
/// drains or resumes it; a relay pairs a draining agent's channels only
/// with clients of services no other agent serves. A new connection starts
/// not draining.
struct AgentState {
    bool draining = false;  // wire: u8 flags, bit 0; the other bits are 0
    bool operator==(const AgentState&) const = default;
};
inline constexpr uint8_t kAgentStateDraining = 0x01;

/// Alternative i holds the message of type i + 1 (MessageType order).
using Message = std::variant<Hello, HelloAck, Config, ConfigResult, OpenChannels, Heartbeat,
                             Goodbye, BackendFailed, OutboundRequest, OutboundResult, AgentState>;

[[nodiscard]] MessageType type_of(const Message& m) noexcept;

/// The version the relay answers `hello` with: the highest version both this
/// build ([kMinProtocolVersion, kProtocolVersion]) and the agent speak, or
/// nullopt when the ranges do not meet (send GOODBYE(Version) and close).
[[nodiscard]] std::optional<uint8_t> negotiate_version(const Hello& hello) noexcept;
/// The heartbeat interval the relay puts in HELLO_ACK for an agent that asked
/// for `requested_ms`: kDefaultHeartbeatMs for 0, else clamped to
/// [kMinHeartbeatMs, kMaxHeartbeatMs].
[[nodiscard]] uint32_t negotiate_heartbeat_ms(uint32_t requested_ms) noexcept;
[[nodiscard]] std::string_view to_string(MessageType t) noexcept;
/// "shutdown", "reload", "bad-key", "protocol", "version", "timeout", "replaced",
/// "not-allowed", "internal" (SPEC REASON spelling).
[[nodiscard]] std::string_view to_string(GoodbyeReason r) noexcept;
/// "ok", "bind-failed", "not-allowed", "conflict", "invalid".
[[nodiscard]] std::string_view to_string(ListenStatus s) noexcept;
[[nodiscard]] std::string_view to_string(OutboundStatus s) noexcept;

// ---- control frames ---------------------------------------------------------

/// Appends one whole frame (header + payload) for `m` to `out`. Fails, leaving
/// `out` unchanged, when a field breaks a limit the decoder enforces (string or
/// list too long, payload over kMaxFrame), so we never send what the peer
/// must reject. Does not block.
[[nodiscard]] Result<void> encode(const Message& m, std::vector<uint8_t>& out);

enum class DecodeStatus { Ok, NeedMore, Error };

struct DecodeResult {
    DecodeStatus status = DecodeStatus::NeedMore;
    Message message;      // Ok: the decoded message
    size_t consumed = 0;  // Ok: bytes of the frame (drop them from the input)
    size_t needed = 0;    // NeedMore: total bytes needed before decoding can go on
    std::string error;    // Error: what was wrong, for logs (no peer bytes echoed)
    GoodbyeReason reason = GoodbyeReason::ProtocolError;  // Error: what to say in GOODBYE
};

/// Decodes the first frame at the start of `in`.
/// - Ok: `message` and `consumed` are set; bytes after the frame are untouched.
/// - NeedMore: `in` is a valid prefix; call again with at least `needed` bytes.
///   A header announcing more than kMaxFrame is an Error as soon as the header
///   is complete, without waiting for the payload.
/// - Error: the stream is unusable; send GOODBYE(`reason`) and close. A frame
///   version byte other than kProtocolVersion gives reason Version; anything
///   else (flags, type, truncated or trailing payload field, enum value out of
///   range, string or list over its bound) gives ProtocolError.
[[nodiscard]] DecodeResult decode(std::span<const uint8_t> in);

// ---- data channel -----------------------------------------------------------

inline constexpr std::array<uint8_t, 4> kChannelMagic = {'S', 'P', 'D', 'C'};
inline constexpr uint8_t kChannelVersion = 1;
inline constexpr size_t kChannelHelloSize = 40;
/// classify_first_bytes never needs more than this many bytes.
inline constexpr size_t kClassifyBytes = 4;

enum class FirstBytes {
    NeedMore,     // a prefix of a TLS record or of "SPDC": peek again
    Tls,          // 0x16 0x03 0x01..0x04: a TLS handshake record -> control channel
    DataChannel,  // "SPDC" -> data channel hello
    Garbage,      // neither: close without answering
};

/// Classifies a new connection on control_listen from its first bytes (read
/// with MSG_PEEK). Returns NeedMore only while `in` is a strict prefix of a
/// valid start; never needs more than kClassifyBytes.
[[nodiscard]] FirstBytes classify_first_bytes(std::span<const uint8_t> in) noexcept;

/// The 40-byte hello an agent writes first on a data channel.
[[nodiscard]] std::array<uint8_t, kChannelHelloSize> encode_channel_hello(
    const Token& token) noexcept;

struct ChannelHelloResult {
    DecodeStatus status = DecodeStatus::NeedMore;
    Token token{};      // Ok: the presented token
    size_t needed = 0;  // NeedMore: kChannelHelloSize
    std::string error;  // Error: bad magic, version or reserved bytes
};

/// Decodes a data-channel hello at the start of `in` (exactly
/// kChannelHelloSize bytes are consumed on Ok; later bytes are not looked at).
[[nodiscard]] ChannelHelloResult decode_channel_hello(std::span<const uint8_t> in);

inline constexpr std::array<uint8_t, 4> kBindingMagic = {'S', 'P', 'B', 'H'};
inline constexpr size_t kBindingFixedSize = 6;      // magic + u16 length
inline constexpr size_t kMaxBindingPayload = 1024;  // the u16 length's bound

/// What the relay tells the agent when it pairs a data channel with a client.
struct Binding {
    uint64_t session_id = 0;
    std::string service;
    std::string client_addr;  // "ip:port" / "[v6]:port"
    std::string listen_addr;  // the relay listener the client reached
    bool operator==(const Binding&) const = default;
};

/// The binding header bytes ("SPBH", u16 length, payload). Fails when the
/// payload would exceed kMaxBindingPayload.
[[nodiscard]] Result<std::vector<uint8_t>> encode_binding(const Binding& b);

struct BindingResult {
    DecodeStatus status = DecodeStatus::NeedMore;
    Binding binding;      // Ok
    size_t consumed = 0;  // Ok: header bytes; client bytes start right after
    size_t needed = 0;    // NeedMore: total bytes needed
    std::string error;    // Error
};

/// Decodes a binding header at the start of `in`. Strict like decode():
/// bad magic, length over kMaxBindingPayload, truncated or trailing payload
/// fields are errors; bytes after the header (client data) are not looked at.
[[nodiscard]] BindingResult decode_binding(std::span<const uint8_t> in);

}  // namespace sp::control
