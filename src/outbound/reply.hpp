// SPDX-License-Identifier: Apache-2.0
// Why a forward-proxy request failed, and what the application is told:
// the SOCKS5 reply code (RFC 1928 section 6), the HTTP status line, and the
// REASON word of outbound-rejected (sallyport(7)). One table, so the three
// never disagree.
#pragma once

#include <cstdint>
#include <string_view>

#include "control/frame.hpp"

namespace sp::outbound {

enum class Failure : uint8_t {
    NotAllowed,     // the relay's [outbound] allow, or the agent's allow_clients
    ResolveFailed,  // the relay could not resolve the name
    ConnectFailed,  // the relay's connect failed (errno says how)
    Timeout,        // the relay's connect, or the agent's wait for the relay, timed out
    Limit,          // max_outbound_sessions
    Disabled,       // the relay has no [outbound] allow
    NoRelay,        // no relay link is up, or it went down before answering
    BadRequest,     // a malformed SOCKS5 or CONNECT request (or bad credentials)
};

/// SOCKS5 reply codes used here (RFC 1928 section 6).
namespace socks {
inline constexpr uint8_t kSucceeded = 0x00;
inline constexpr uint8_t kGeneralFailure = 0x01;
inline constexpr uint8_t kNotAllowed = 0x02;
inline constexpr uint8_t kNetworkUnreachable = 0x03;
inline constexpr uint8_t kHostUnreachable = 0x04;
inline constexpr uint8_t kConnectionRefused = 0x05;
inline constexpr uint8_t kTtlExpired = 0x06;
inline constexpr uint8_t kCommandNotSupported = 0x07;
inline constexpr uint8_t kAddressTypeNotSupported = 0x08;
}  // namespace socks

/// The REASON word of outbound-rejected: "not-allowed", "resolve-failed",
/// "connect-failed", "timeout", "limit", "disabled", "no-relay",
/// "bad-request".
[[nodiscard]] std::string_view to_string(Failure f) noexcept;

/// A relay's OUTBOUND_RESULT status as a Failure; Ok has none (NoRelay is
/// returned, never used by callers that check Ok first).
[[nodiscard]] Failure failure_of(control::OutboundStatus s) noexcept;

/// The SOCKS5 reply code for `f`; `err` (positive errno) refines
/// ConnectFailed: ECONNREFUSED 0x05, ENETUNREACH 0x03, EHOSTUNREACH 0x04,
/// ETIMEDOUT 0x04, others 0x01. Denied and Disabled are 0x02 ("connection not
/// allowed by ruleset"), ResolveFailed and Timeout 0x04, Limit and NoRelay 0x01.
[[nodiscard]] uint8_t socks_code(Failure f, int err) noexcept;

/// The complete HTTP response for `f` (status line, Content-Length: 0,
/// Connection: close, blank line): 403 for NotAllowed/Disabled, 502 for
/// ResolveFailed and ConnectFailed, 504 for Timeout, 503 for Limit and
/// NoRelay, 400 for BadRequest.
[[nodiscard]] std::string_view http_response(Failure f) noexcept;

/// "HTTP/1.1 200 Connection established\r\n\r\n".
[[nodiscard]] std::string_view http_established() noexcept;

}  // namespace sp::outbound
