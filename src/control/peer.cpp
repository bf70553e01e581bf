// SPDX-License-Identifier: Apache-2.0
#include "control/peer.hpp"

#include <sys/epoll.h>

#include <array>

namespace sp::control {

FramedPeer::FramedPeer(TlsStream stream)
    : stream_(std::move(stream)), last_rx_(Clock::now()), last_tx_(Clock::now()) {}

FramedPeer::ReadOutcome FramedPeer::read_frames(const std::function<bool(Message&&)>& on_message) {
    std::array<uint8_t, 16384> buf{};
    // Bounded: a peer streaming frames without pause must not starve the
    // other connections of this loop; level-triggered epoll brings us back.
    for (int round = 0; round < 64; ++round) {
        const TlsResult r = stream_.read(buf);
        if (r.status == TlsStatus::WantRead || r.status == TlsStatus::WantWrite) {
            return {};
        }
        if (r.status == TlsStatus::Eof) {
            return {ReadStatus::Eof, "peer closed the connection", GoodbyeReason::Shutdown};
        }
        if (r.status != TlsStatus::Ok) {
            return {ReadStatus::Error, r.reason, GoodbyeReason::ProtocolError, r.failure};
        }
        last_rx_ = Clock::now();
        rx_.insert(rx_.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r.bytes));
        size_t off = 0;
        for (;;) {
            DecodeResult d = decode(std::span(rx_).subspan(off));
            if (d.status == DecodeStatus::NeedMore) {
                break;
            }
            if (d.status == DecodeStatus::Error) {
                return {ReadStatus::Error, d.error, d.reason};
            }
            off += d.consumed;
            if (!on_message(std::move(d.message))) {
                // The handler may have destroyed this peer (closing the
                // connection does): touch no member from here on.
                return {};
            }
        }
        rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(off));
    }
    return {};
}

Result<void> FramedPeer::send(const Message& m) {
    std::vector<uint8_t> bytes;
    if (auto r = encode(m, bytes); !r) {
        return r;
    }
    if (stream_.pending_bytes() + bytes.size() > kMaxPendingOutput) {
        return runtime_error(0, "peer does not read: {} bytes pending", stream_.pending_bytes());
    }
    stream_.queue(bytes);
    last_tx_ = Clock::now();
    if (!flush()) {
        return runtime_error(0, "send failed");
    }
    return {};
}

bool FramedPeer::flush() {
    const TlsResult r = stream_.flush();
    return r.status != TlsStatus::Error;
}

uint32_t FramedPeer::poll_events() const noexcept {
    return EPOLLIN | (stream_.wants_write() ? static_cast<uint32_t>(EPOLLOUT) : 0U);
}

void FramedPeer::goodbye(GoodbyeReason reason, std::string_view message) {
    // Best effort: the connection is going away whatever happens here.
    (void)send(Goodbye{reason, std::string(message.substr(0, 512))});
    (void)stream_.shutdown();
}

}  // namespace sp::control
