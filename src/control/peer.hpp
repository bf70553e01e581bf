// SPDX-License-Identifier: Apache-2.0
// A control channel after its TLS handshake: frames in, frames out, and the
// liveness clock heartbeats are judged by. The relay and the agent drive one
// of these per connection from their poll loops.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "control/frame.hpp"
#include "control/tls.hpp"

namespace sp::control {

class FramedPeer final {
public:
    using Clock = std::chrono::steady_clock;

    /// Output a peer does not read is bounded: past this, send() fails and
    /// the caller drops the connection rather than buffer without end.
    static constexpr size_t kMaxPendingOutput = 8u << 20;

    explicit FramedPeer(TlsStream stream);

    enum class ReadStatus { Open, Eof, Error };
    struct ReadOutcome {
        ReadStatus status = ReadStatus::Open;
        std::string error;  // Error: for the log
        GoodbyeReason reason = GoodbyeReason::ProtocolError;
        TlsFailure tls = TlsFailure::None;  // Error from TLS itself (an alert), not the codec
    };

    /// Reads what the socket has and hands each whole frame to `on_message`
    /// in order. When `on_message` returns false, read_frames returns at once
    /// without touching this object again, so the handler may destroy the
    /// peer (close the connection) before returning false; it must return
    /// false whenever it did. Never blocks. Open: wait for the next readiness.
    [[nodiscard]] ReadOutcome read_frames(const std::function<bool(Message&&)>& on_message);

    /// Encodes and queues `m`, then tries to send. Fails when the message
    /// breaks a codec limit, the output bound is hit, or the socket failed.
    [[nodiscard]] Result<void> send(const Message& m);
    /// Sends what is queued: false when the socket failed.
    [[nodiscard]] bool flush();
    /// EPOLLIN, plus EPOLLOUT while output is pending.
    [[nodiscard]] uint32_t poll_events() const noexcept;

    /// Queues GOODBYE and makes one attempt to send it with close_notify.
    void goodbye(GoodbyeReason reason, std::string_view message);
    /// After goodbye(): sends what is still queued, then close_notify. Done
    /// when both are out; WantWrite/WantRead: call again on that readiness.
    [[nodiscard]] TlsResult shutdown() { return stream_.shutdown(); }

    [[nodiscard]] Clock::time_point last_rx() const noexcept { return last_rx_; }
    [[nodiscard]] Clock::time_point last_tx() const noexcept { return last_tx_; }
    [[nodiscard]] int fd() const noexcept { return stream_.fd(); }
    [[nodiscard]] const std::string& peer_identity() const noexcept {
        return stream_.peer_identity();
    }

private:
    TlsStream stream_;
    std::vector<uint8_t> rx_;
    Clock::time_point last_rx_;
    Clock::time_point last_tx_;
};

}  // namespace sp::control
