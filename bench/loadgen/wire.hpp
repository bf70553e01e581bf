// SPDX-License-Identifier: Apache-2.0
// sallyport-bench's tiny wire protocol: a 16-byte header from the client says
// what the connection does, so one server serves every workload and both ends
// can verify every byte.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace sp::bench {

inline constexpr uint16_t kHeaderMagic = 0x5342;       // "BS" little-endian
inline constexpr uint32_t kTrailerMagic = 0x54425053;  // "SPBT"

/// What the client asks of the server.
enum class Op : uint8_t {
    Up = 1,    // client sends Pattern(seed) until EOF; server verifies, answers a Trailer
    Down = 2,  // server sends Pattern(seed) until client EOF (or `length` bytes), then EOF
    Echo = 3,  // server echoes; length 0 = until EOF, else echo `length` bytes then close
};

/// Client -> server, first 16 bytes of every connection (after the banner, if any).
struct Header {
    uint16_t magic = kHeaderMagic;
    uint8_t op = 0;
    uint8_t flags = 0;
    uint32_t seed = 0;
    uint64_t length = 0;
};
static_assert(sizeof(Header) == 16);

/// Server -> client after an Up stream's EOF: what the server received and verified.
struct Trailer {
    uint32_t magic = kTrailerMagic;
    uint32_t reserved = 0;
    uint64_t bytes = 0;
    uint64_t mismatched = 0;  // bytes that differed from Pattern(seed)
};
static_assert(sizeof(Trailer) == 24);

/// Sent by `serve --mode banner` on accept, before reading anything, as SSH
/// and FTP servers speak first. Exactly 32 bytes.
inline constexpr std::string_view kBanner = "SSH-2.0-sallyport-bench-banner\r\n";
static_assert(kBanner.size() == 32);

}  // namespace sp::bench
