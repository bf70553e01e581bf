// SPDX-License-Identifier: Apache-2.0
// user_data codec: every SQE carries a packed tag {slot:32, gen:16, op:8, dir:8}
// instead of a pointer, so a late CQE for a reused slot is detected and dropped.
#pragma once

#include <cstdint>

namespace sp::io {

/// What an SQE was for. Values are part of the tag, never persisted.
enum class Op : uint8_t {
    None = 0,
    PollIn,       // multishot readiness on a session socket; dir = side (0 client, 1 peer)
    PollOut,      // one-shot write readiness; dir = direction blocked on its destination
    Accept,       // multishot accept; slot = listener id
    Timer,        // add_timer; slot = timer id
    Tick,         // the worker's coarse periodic tick (idle timeouts)
    Inbox,        // multishot poll on the inbox eventfd
    WaitFd,       // wait_fd poll; slot = waiter id
    Ignored,      // cancels, linked timeouts: completions nobody waits for
    AcceptRearm,  // timer that re-arms a paused listener; slot = listener id
    Recv,         // copy path: RECV with a provided buffer; dir = direction
    Send,         // copy path: SEND of that buffer; dir = direction
};

struct Tag {
    uint32_t slot = 0;
    uint16_t gen = 0;
    Op op = Op::None;
    uint8_t dir = 0;
};

[[nodiscard]] constexpr uint64_t encode(const Tag& t) noexcept {
    return uint64_t{t.slot} | (uint64_t{t.gen} << 32) |
           (uint64_t{static_cast<uint8_t>(t.op)} << 48) | (uint64_t{t.dir} << 56);
}

[[nodiscard]] constexpr Tag decode(uint64_t v) noexcept {
    return Tag{static_cast<uint32_t>(v), static_cast<uint16_t>(v >> 32),
               static_cast<Op>(static_cast<uint8_t>(v >> 48)), static_cast<uint8_t>(v >> 56)};
}

}  // namespace sp::io
