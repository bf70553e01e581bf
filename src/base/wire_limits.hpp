// SPDX-License-Identifier: Apache-2.0
// The bounds of the relay<->agent control protocol (control-protocol.md
// sections 3.1 and 3.2), in base so both sides of a promise share them: the
// codec (control/frame.hpp) enforces them, and the configuration refuses,
// with FILE:LINE:COL, what the wire could never carry. Sizes only, no codec.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sp::wire {

inline constexpr uint32_t kMaxFrame = 1u << 20;  // payload bytes of one frame, header excluded
inline constexpr size_t kMaxString = 4096;       // any string without a tighter bound
inline constexpr size_t kMaxName = 255;          // agent/service names, hosts, versions
inline constexpr size_t kMaxAddress = 255;       // listen, CIDR, "ip:port" strings
inline constexpr size_t kMaxServices = 1024;     // services in one CONFIG
inline constexpr size_t kMaxListenPerService = 256;
inline constexpr size_t kMaxCidrsPerList = 1024;  // allow_clients / deny_clients each
inline constexpr size_t kMaxListeners = 4096;     // listen strings in a CONFIG, all services
inline constexpr size_t kMaxTokens = 1024;        // tokens in one OPEN_CHANNELS

// Encoded sizes (section 3.1): string(N) is a u16 byte count and the bytes,
// list(T, N) a u16 item count and the items.
inline constexpr size_t kStringHeader = 2;
inline constexpr size_t kListHeader = 2;
/// CONFIG without its services: generation (u32) and the services' count.
inline constexpr size_t kConfigFixed = 4 + kListHeader;
/// One CONFIG service without its name and lists: max_sessions and
/// affinity_s (u32 each), plus the counts of listen, allow_clients and
/// deny_clients.
inline constexpr size_t kServiceFixed = 4 + 4 + 3 * kListHeader;

/// Bytes of one encoded string of `len` bytes.
[[nodiscard]] constexpr size_t string_size(size_t len) noexcept {
    return kStringHeader + len;
}

}  // namespace sp::wire
