// SPDX-License-Identifier: Apache-2.0
#include "agent/proxy_header.hpp"

#include <netinet/in.h>

#include <cstring>

#include <fmt/format.h>

namespace sp::agent {

namespace {

constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// Both addresses in one family: v6 if either is v6 (v4 becomes ::ffff:a.b.c.d).
bool as_v6(const SocketAddress& a, const SocketAddress& b) {
    return a.ip().unmapped().family() == AF_INET6 || b.ip().unmapped().family() == AF_INET6;
}

std::array<uint8_t, 16> v6_bytes(const IpAddress& ip) {
    std::array<uint8_t, 16> out{};
    const IpAddress u = ip.unmapped();
    if (u.family() == AF_INET) {
        out[10] = 0xff;
        out[11] = 0xff;
        std::memcpy(out.data() + 12, u.bytes().data(), 4);
    } else {
        out = u.bytes();
    }
    return out;
}

std::string v6_text(const IpAddress& ip) {
    const auto b = v6_bytes(ip);
    return IpAddress::from_bytes(AF_INET6, b.data()).to_string();
}

}  // namespace

std::vector<uint8_t> proxy_v1(const SocketAddress& client, const SocketAddress& destination) {
    std::string line;
    if (as_v6(client, destination)) {
        line = fmt::format("PROXY TCP6 {} {} {} {}\r\n", v6_text(client.ip()),
                           v6_text(destination.ip()), client.port(), destination.port());
    } else {
        line =
            fmt::format("PROXY TCP4 {} {} {} {}\r\n", client.ip().unmapped().to_string(),
                        destination.ip().unmapped().to_string(), client.port(), destination.port());
    }
    return {line.begin(), line.end()};
}

std::vector<uint8_t> proxy_v2(const SocketAddress& client, const SocketAddress& destination) {
    std::vector<uint8_t> out(std::begin(kV2Signature), std::end(kV2Signature));
    out.push_back(0x21);  // version 2, PROXY command
    const bool v6 = as_v6(client, destination);
    out.push_back(v6 ? 0x21 : 0x11);  // AF_INET6 / AF_INET, STREAM
    const uint16_t len = v6 ? 36 : 12;
    out.push_back(static_cast<uint8_t>(len >> 8));
    out.push_back(static_cast<uint8_t>(len & 0xff));
    if (v6) {
        const auto s = v6_bytes(client.ip());
        const auto d = v6_bytes(destination.ip());
        out.insert(out.end(), s.begin(), s.end());
        out.insert(out.end(), d.begin(), d.end());
    } else {
        // Copies: bytes() of a temporary would dangle.
        const auto s = client.ip().unmapped().bytes();
        const auto d = destination.ip().unmapped().bytes();
        out.insert(out.end(), s.begin(), s.begin() + 4);
        out.insert(out.end(), d.begin(), d.begin() + 4);
    }
    for (const uint16_t p : {client.port(), destination.port()}) {
        out.push_back(static_cast<uint8_t>(p >> 8));
        out.push_back(static_cast<uint8_t>(p & 0xff));
    }
    return out;
}

}  // namespace sp::agent
