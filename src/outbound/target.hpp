// SPDX-License-Identifier: Apache-2.0
// Where an internal application wants to go, as its SOCKS5 or CONNECT
// request named it: a DNS name or an IP literal, and a port. The relay
// resolves names; the agent only checks that the text is a plausible host.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sp::outbound {

/// The longest host OUTBOUND_REQUEST carries (string(255)); a DNS name is
/// at most 253 characters anyway.
inline constexpr size_t kMaxHost = 255;

struct Target {
    std::string host;  // a name, an IPv4 literal, or an IPv6 literal without brackets
    uint16_t port = 0;

    /// "host:port", "[v6]:port": DESTINATION in events.
    [[nodiscard]] std::string to_string() const;
    friend bool operator==(const Target&, const Target&) = default;
};

/// 1-255 bytes of letters, digits, '.', '-', '_' and ':' (IPv6 literals);
/// no control characters, spaces or '%' (no scope ids): what an agent may
/// put on the wire and into a journal field.
[[nodiscard]] bool valid_host(std::string_view host) noexcept;

}  // namespace sp::outbound
