// SPDX-License-Identifier: Apache-2.0
// Internal to io: one session as the SessionPump keeps it, and the words its
// code is written in: Side (which socket), Dir (which way bytes flow) and
// PumpMode (which engine moves them). Only the pump's files include it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>

#include "base/unique_fd.hpp"
#include "io/buffer_pool.hpp"
#include "io/pipe_pool.hpp"
#include "io/worker.hpp"

namespace sp::io {

/// A session's two sockets. Tags of per-socket SQEs (PollIn, Watch) carry it.
enum class Side : uint8_t { Client = 0, Peer = 1 };
/// A session's two byte streams; Up is client -> peer. Tags of per-stream
/// SQEs (PollOut, Recv, Send) carry it.
enum class Dir : uint8_t { Up = 0, Down = 1 };

[[nodiscard]] constexpr Side source(Dir d) noexcept {
    return d == Dir::Up ? Side::Client : Side::Peer;
}
[[nodiscard]] constexpr Side sink(Dir d) noexcept {
    return d == Dir::Up ? Side::Peer : Side::Client;
}
/// The direction that reads from `s`.
[[nodiscard]] constexpr Dir read_from(Side s) noexcept {
    return s == Side::Client ? Dir::Up : Dir::Down;
}
[[nodiscard]] constexpr Dir other(Dir d) noexcept {
    return d == Dir::Up ? Dir::Down : Dir::Up;
}
[[nodiscard]] constexpr uint8_t wire(Side s) noexcept {
    return static_cast<uint8_t>(s);
}
[[nodiscard]] constexpr uint8_t wire(Dir d) noexcept {
    return static_cast<uint8_t>(d);
}

/// Two values indexed by Side or by Dir (never by an int), so an expression
/// that mixes the two does not compile.
template <typename T, typename Key>
struct PerKey {
    std::array<T, 2> v{};
    [[nodiscard]] T& operator[](Key k) noexcept { return v[static_cast<uint8_t>(k)]; }
    [[nodiscard]] const T& operator[](Key k) const noexcept { return v[static_cast<uint8_t>(k)]; }
};
template <typename T>
using PerSide = PerKey<T, Side>;
template <typename T>
using PerDir = PerKey<T, Dir>;

enum class PumpMode : uint8_t {
    Splice,    // readiness + splice(2) through a PipePool pipe (pump_splice.cpp)
    Fallback,  // readiness + recv/send through a BufferPool buffer (pump_splice.cpp)
    Uring,     // io_uring RECV/SEND with provided buffers (pump_uring.cpp)
};

/// How far a direction's stream has come.
enum class Flow : uint8_t {
    Open,  // the source may send more
    Eof,   // the source sent FIN; bytes read before it may still be in flight
    Done,  // every byte delivered and the FIN passed on (shutdown(SHUT_WR))
};

/// One direction: reads its source socket, writes its sink. Bytes in flight
/// sit in `pipe` or `buf` (Splice, Fallback) or in provided buffers
/// (Uring), held only while there are some, so an idle session holds none.
struct Direction {
    PumpMode mode = PumpMode::Splice;
    Flow flow = Flow::Open;
    uint32_t held = 0;      // bytes read from the source, not yet written
    uint32_t buf_off = 0;   // Fallback and Uring: start of `held` in the buffer
    uint64_t bytes = 0;     // delivered to the sink
    bool deferred = false;  // on the pump's deferred list: budget ran out with work left

    // --- Splice, Fallback ---
    std::optional<Pipe> pipe;
    Buffer buf;                  // also used in Splice mode for a chunk when no pipe was free
    bool readable = false;       // readiness seen and no EAGAIN from the source since
    bool write_blocked = false;  // the sink said EAGAIN: wait for POLLOUT
    bool poll_out_armed = false;

    // --- Uring: filled provided buffers in arrival order. The head is being
    // sent (`held` bytes left at buf_off); a RECV into the next one overlaps
    // that SEND, so the source is read while the sink drains. ---
    static constexpr uint8_t kMaxBufs = 2;
    std::array<uint16_t, kMaxBufs> bids{};
    std::array<uint32_t, kMaxBufs> lens{};
    uint8_t nbufs = 0;
    bool recv_armed = false;
    bool send_armed = false;
    bool waits_buffer = false;  // on the pump's buffer waiters: a RECV found the ring empty
};

struct Session {
    PerSide<UniqueFd> fd;
    PerDir<Direction> dir;
    /// Multishot poll per socket: PollIn (Splice, Fallback) or Watch (Uring).
    PerSide<bool> poll_armed;
    Worker::CloseFn on_close;
    uint32_t idle_timeout_s = 0;
    std::chrono::steady_clock::time_point start;
    std::chrono::steady_clock::time_point last_activity;
    uint32_t inflight = 0;        // SQEs whose final CQE has not arrived
    bool closing = false;         // ended: on_close ran, waiting for inflight to reach 0
    bool cancel_pending = false;  // closing, and the SQ refused the cancels
    bool starved = false;         // on the pump's starved list (an SQE or a resource to retry)
};

}  // namespace sp::io
