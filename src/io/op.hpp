// SPDX-License-Identifier: Apache-2.0
// user_data codec: every SQE carries a packed tag {slot:32, gen:16, op:8, dir:8}
// instead of a pointer, so a late CQE for a reused slot is detected and dropped.
#pragma once

#include <cstdint>

namespace sp::io {

/// What an operation is. The SQE kinds travel in the tag; the last four are
/// the pump's own non-blocking syscalls, never SQEs, named here so that one
/// classifier (classify.hpp) covers every operation the data plane makes.
/// Values are never persisted.
enum class Op : uint8_t {
    None = 0,  // never built: a CQE carrying it is a bug
    PollIn,    // splice/fallback: multishot readiness on a session socket; dir = Side
    PollOut,   // one-shot write readiness; dir = the Dir blocked on its sink
    Watch,     // io_uring copy: multishot POLLERR on a source no RECV reads; dir = Side
    Recv,      // io_uring copy: RECV with a provided buffer; dir = Dir
    Send,      // io_uring copy: SEND of the head buffer; dir = Dir
    Accept,    // multishot accept; slot = listener id
    Inbox,     // multishot poll on the inbox eventfd
    WaitFd,    // wait_fd poll; slot = waiter id
    Cancel,    // cancels: completions nobody waits for (-ENOENT, -EALREADY are normal)
    // --- not SQEs ---
    SpliceIn,   // splice(socket -> pipe)
    SpliceOut,  // splice(pipe -> socket)
    RecvCall,   // recv(2) into a fallback buffer
    SendCall,   // send(2) from a fallback buffer
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
