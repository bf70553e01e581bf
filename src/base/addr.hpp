// SPDX-License-Identifier: Apache-2.0
// Addresses as users write them (SPEC section 3): HOST:PORT, [V6]:PORT, port
// ranges HOST:P1-P2, and CIDRs. Pure parsing and matching; no DNS, no I/O.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace sp {

/// An IPv4 or IPv6 address. IPv4-mapped IPv6 (::ffff:a.b.c.d) compares and
/// matches as the IPv4 address, so a dual-stack listener's peers match v4 rules.
class IpAddress final {
public:
    IpAddress() = default;
    [[nodiscard]] static IpAddress v4(uint32_t host_order) noexcept;
    /// `data` holds 4 bytes for AF_INET, 16 for AF_INET6, network order.
    [[nodiscard]] static IpAddress from_bytes(int family, const void* data) noexcept;
    [[nodiscard]] static Result<IpAddress> parse(std::string_view text);

    [[nodiscard]] int family() const noexcept { return family_; }  // AF_INET or AF_INET6
    [[nodiscard]] const std::array<uint8_t, 16>& bytes() const noexcept { return bytes_; }
    [[nodiscard]] bool is_unspecified() const noexcept;
    /// The same address, with ::ffff:a.b.c.d turned into a.b.c.d.
    [[nodiscard]] IpAddress unmapped() const noexcept;
    [[nodiscard]] std::string to_string() const;

    friend bool operator==(const IpAddress& a, const IpAddress& b) noexcept;

private:
    int family_ = AF_INET;
    std::array<uint8_t, 16> bytes_{};  // v4 uses the first 4 bytes
};

/// A socket address with a port: what bind/connect/accept use.
class SocketAddress final {
public:
    SocketAddress() = default;
    SocketAddress(const IpAddress& ip, uint16_t port) noexcept;
    /// From what accept(2) or getsockname(2) filled in; nullopt for other families.
    [[nodiscard]] static std::optional<SocketAddress> from_sockaddr(const sockaddr* sa,
                                                                    socklen_t len) noexcept;
    [[nodiscard]] static Result<SocketAddress> parse(std::string_view text);

    [[nodiscard]] IpAddress ip() const noexcept { return ip_; }
    [[nodiscard]] uint16_t port() const noexcept { return port_; }
    [[nodiscard]] int family() const noexcept { return ip_.family(); }
    /// Fills `ss` for bind/connect and returns its length.
    [[nodiscard]] socklen_t to_sockaddr(sockaddr_storage& ss) const noexcept;
    /// "1.2.3.4:80" or "[::1]:80".
    [[nodiscard]] std::string to_string() const;

    friend bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept {
        return a.ip_ == b.ip_ && a.port_ == b.port_;
    }

private:
    IpAddress ip_;
    uint16_t port_ = 0;
};

struct PortRange {
    uint16_t first = 0;
    uint16_t last = 0;
    [[nodiscard]] uint32_t size() const noexcept { return uint32_t{last} - first + 1U; }
    [[nodiscard]] bool contains(uint16_t p) const noexcept { return p >= first && p <= last; }
    [[nodiscard]] bool contains(const PortRange& r) const noexcept {
        return r.first >= first && r.last <= last;
    }
    [[nodiscard]] bool overlaps(const PortRange& r) const noexcept {
        return r.first <= last && first <= r.last;
    }
    friend bool operator==(const PortRange&, const PortRange&) = default;
};

/// "HOST:PORT", "HOST:P1-P2", "[V6]:PORT", "[V6]:P1-P2". HOST may be a name
/// (the agent's relay address); `ip` is set when HOST is a literal address.
struct HostPorts {
    std::string host;
    std::optional<IpAddress> ip;
    PortRange ports;

    [[nodiscard]] static Result<HostPorts> parse(std::string_view text, bool allow_range);
    /// "HOST:PORT" for the first port, "HOST:P1-P2" for ranges; v6 in brackets.
    [[nodiscard]] std::string to_string() const;
};

/// "10.0.0.0/8", "2001:db8::/32"; a bare address is a /32 or /128. Host bits
/// set beyond the prefix are rejected: "10.0.0.1/8" is almost always a typo.
class Cidr final {
public:
    [[nodiscard]] static Result<Cidr> parse(std::string_view text);
    [[nodiscard]] bool contains(const IpAddress& ip) const noexcept;
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] const IpAddress& network() const noexcept { return net_; }
    [[nodiscard]] int prefix() const noexcept { return prefix_; }

private:
    IpAddress net_;
    int prefix_ = 0;
};

}  // namespace sp
