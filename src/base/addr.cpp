// SPDX-License-Identifier: Apache-2.0
#include "base/addr.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace sp {

namespace {

constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

Result<uint16_t> parse_port(std::string_view s, std::string_view whole) {
    unsigned value = 0;
    const auto* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, value);
    if (s.empty() || ec != std::errc() || ptr != end || value == 0 || value > 65535) {
        return usage_error("invalid port \"{}\" in \"{}\" (expected 1-65535)", s, whole);
    }
    return static_cast<uint16_t>(value);
}

}  // namespace

IpAddress IpAddress::v4(uint32_t host_order) noexcept {
    IpAddress a;
    a.family_ = AF_INET;
    const uint32_t be = htonl(host_order);
    std::memcpy(a.bytes_.data(), &be, 4);
    return a;
}

IpAddress IpAddress::from_bytes(int family, const void* data) noexcept {
    IpAddress a;
    a.family_ = family == AF_INET6 ? AF_INET6 : AF_INET;
    std::memcpy(a.bytes_.data(), data, a.family_ == AF_INET ? 4 : 16);
    return a;
}

Result<IpAddress> IpAddress::parse(std::string_view text) {
    // inet_pton needs a NUL-terminated string; bound the copy so hostile
    // input cannot make us allocate.
    if (text.empty() || text.size() > 45) {
        return usage_error("invalid IP address \"{}\"", text);
    }
    char buf[64];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    IpAddress a;
    if (::inet_pton(AF_INET, buf, a.bytes_.data()) == 1) {
        a.family_ = AF_INET;
        return a;
    }
    if (::inet_pton(AF_INET6, buf, a.bytes_.data()) == 1) {
        a.family_ = AF_INET6;
        return a;
    }
    return usage_error("invalid IP address \"{}\"", text);
}

bool IpAddress::is_unspecified() const noexcept {
    const size_t n = family_ == AF_INET ? 4 : 16;
    for (size_t i = 0; i < n; ++i) {
        if (bytes_[i] != 0) {
            return false;
        }
    }
    return true;
}

IpAddress IpAddress::unmapped() const noexcept {
    if (family_ != AF_INET6 ||
        std::memcmp(bytes_.data(), kMappedPrefix.data(), kMappedPrefix.size()) != 0) {
        return *this;
    }
    IpAddress a;
    a.family_ = AF_INET;
    std::memcpy(a.bytes_.data(), bytes_.data() + 12, 4);
    return a;
}

std::string IpAddress::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (::inet_ntop(family_, bytes_.data(), buf, sizeof buf) == nullptr) {
        return "?";
    }
    return buf;
}

bool operator==(const IpAddress& a, const IpAddress& b) noexcept {
    const IpAddress x = a.unmapped();
    const IpAddress y = b.unmapped();
    if (x.family_ != y.family_) {
        return false;
    }
    return std::memcmp(x.bytes_.data(), y.bytes_.data(), x.family_ == AF_INET ? 4 : 16) == 0;
}

SocketAddress::SocketAddress(const IpAddress& ip, uint16_t port) noexcept : ip_(ip), port_(port) {}

std::optional<SocketAddress> SocketAddress::from_sockaddr(const sockaddr* sa,
                                                          socklen_t len) noexcept {
    if (sa == nullptr) {
        return std::nullopt;
    }
    if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
        sockaddr_in sin{};
        std::memcpy(&sin, sa, sizeof sin);
        return SocketAddress(IpAddress::v4(ntohl(sin.sin_addr.s_addr)), ntohs(sin.sin_port));
    }
    if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
        sockaddr_in6 sin6{};
        std::memcpy(&sin6, sa, sizeof sin6);
        return SocketAddress(IpAddress::from_bytes(AF_INET6, &sin6.sin6_addr),
                             ntohs(sin6.sin6_port));
    }
    return std::nullopt;
}

Result<SocketAddress> SocketAddress::parse(std::string_view text) {
    auto hp = HostPorts::parse(text, false);
    if (!hp) {
        return Unexpected(hp.error());
    }
    if (!hp->ip) {
        return usage_error("\"{}\" is not a numeric address (names are not allowed here)", text);
    }
    return SocketAddress(*hp->ip, hp->ports.first);
}

socklen_t SocketAddress::to_sockaddr(sockaddr_storage& ss) const noexcept {
    std::memset(&ss, 0, sizeof ss);
    if (ip_.family() == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port_);
        std::memcpy(&sin->sin_addr, ip_.bytes().data(), 4);
        return sizeof(sockaddr_in);
    }
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port_);
    std::memcpy(&sin6->sin6_addr, ip_.bytes().data(), 16);
    return sizeof(sockaddr_in6);
}

std::string SocketAddress::to_string() const {
    if (ip_.family() == AF_INET6) {
        return fmt::format("[{}]:{}", ip_.to_string(), port_);
    }
    return fmt::format("{}:{}", ip_.to_string(), port_);
}

Result<HostPorts> HostPorts::parse(std::string_view text, bool allow_range) {
    HostPorts out;
    std::string_view host;
    std::string_view ports;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return usage_error("invalid address \"{}\" (expected [V6]:PORT)", text);
        }
        host = text.substr(1, close - 1);
        ports = text.substr(close + 2);
        auto ip = IpAddress::parse(host);
        if (!ip || ip->family() != AF_INET6) {
            return usage_error("invalid IPv6 address \"{}\" in \"{}\"", host, text);
        }
        out.ip = *ip;
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            return usage_error("invalid address \"{}\" (expected HOST:PORT)", text);
        }
        host = text.substr(0, colon);
        ports = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            return usage_error("invalid address \"{}\" (IPv6 addresses need brackets: [V6]:PORT)",
                               text);
        }
        if (host.empty() || host.size() > 253) {
            return usage_error("invalid host in \"{}\"", text);
        }
        if (auto ip = IpAddress::parse(host); ip) {
            out.ip = *ip;
        } else {
            for (const char c : host) {
                const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '.';
                if (!ok) {
                    return usage_error("invalid host name \"{}\" in \"{}\"", host, text);
                }
            }
        }
    }
    out.host = std::string(host);
    const auto dash = ports.find('-');
    if (dash == std::string_view::npos) {
        auto p = parse_port(ports, text);
        if (!p) {
            return Unexpected(p.error());
        }
        out.ports = {*p, *p};
        return out;
    }
    if (!allow_range) {
        return usage_error("a port range is not allowed here: \"{}\"", text);
    }
    auto first = parse_port(ports.substr(0, dash), text);
    if (!first) {
        return Unexpected(first.error());
    }
    auto last = parse_port(ports.substr(dash + 1), text);
    if (!last) {
        return Unexpected(last.error());
    }
    if (*last < *first) {
        return usage_error("port range \"{}\" ends before it starts", ports);
    }
    out.ports = {*first, *last};
    return out;
}

std::string HostPorts::to_string() const {
    const std::string h = (ip && ip->family() == AF_INET6) ? fmt::format("[{}]", host) : host;
    if (ports.first == ports.last) {
        return fmt::format("{}:{}", h, ports.first);
    }
    return fmt::format("{}:{}-{}", h, ports.first, ports.last);
}

Result<Cidr> Cidr::parse(std::string_view text) {
    Cidr c;
    const auto slash = text.find('/');
    auto ip = IpAddress::parse(text.substr(0, slash));
    if (!ip) {
        return usage_error("invalid CIDR \"{}\"", text);
    }
    c.net_ = ip->unmapped();
    const int max = c.net_.family() == AF_INET ? 32 : 128;
    if (slash == std::string_view::npos) {
        c.prefix_ = max;
        return c;
    }
    const auto p = text.substr(slash + 1);
    int prefix = -1;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || ec != std::errc() || ptr != p.data() + p.size() || prefix < 0 ||
        prefix > max) {
        return usage_error("invalid prefix length in \"{}\" (0-{})", text, max);
    }
    c.prefix_ = prefix;
    const auto& b = c.net_.bytes();
    for (int bit = prefix; bit < max; ++bit) {
        if ((b[static_cast<size_t>(bit / 8)] >> (7 - bit % 8)) & 1U) {
            auto masked = b;
            for (int k = prefix; k < max; ++k) {
                masked[static_cast<size_t>(k / 8)] &= static_cast<uint8_t>(~(1U << (7 - k % 8)));
            }
            return usage_error(
                "\"{}\" has host bits set beyond /{} (did you mean {}/{}?)", text, prefix,
                IpAddress::from_bytes(c.net_.family(), masked.data()).to_string(), prefix);
        }
    }
    return c;
}

bool Cidr::contains(const IpAddress& addr) const noexcept {
    const IpAddress ip = addr.unmapped();
    if (ip.family() != net_.family()) {
        return false;
    }
    const auto& a = ip.bytes();
    const auto& n = net_.bytes();
    const int full = prefix_ / 8;
    if (std::memcmp(a.data(), n.data(), static_cast<size_t>(full)) != 0) {
        return false;
    }
    const int rest = prefix_ % 8;
    if (rest == 0) {
        return true;
    }
    const auto mask = static_cast<uint8_t>(0xffU << (8 - rest));
    return (a[static_cast<size_t>(full)] & mask) == (n[static_cast<size_t>(full)] & mask);
}

std::string Cidr::to_string() const {
    return fmt::format("{}/{}", net_.to_string(), prefix_);
}

}  // namespace sp
