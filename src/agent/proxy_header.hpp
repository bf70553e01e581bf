// SPDX-License-Identifier: Apache-2.0
// PROXY protocol headers (haproxy.org proxy-protocol.txt, v1 text and v2
// binary, TCP over IPv4/IPv6) that tell a backend the client's real address.
#pragma once

#include <cstdint>
#include <vector>

#include "base/addr.hpp"

namespace sp::agent {

/// "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (TCP6 when either side is
/// IPv6; an IPv4 side is then written v4-mapped so both share a family).
[[nodiscard]] std::vector<uint8_t> proxy_v1(const SocketAddress& client,
                                            const SocketAddress& destination);
/// The 16-byte v2 preamble (PROXY command, STREAM over INET/INET6) and
/// the address block; no TLVs.
[[nodiscard]] std::vector<uint8_t> proxy_v2(const SocketAddress& client,
                                            const SocketAddress& destination);

}  // namespace sp::agent
