// SPDX-License-Identifier: Apache-2.0
#include "relay/session_events.hpp"

#include <charconv>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"

namespace sp::relay {

using log::Level;

std::string session_hex(uint64_t id) {
    return fmt::format("{:016x}", id);
}

std::optional<uint64_t> parse_session_hex(std::string_view text) noexcept {
    uint64_t id = 0;
    const char* end = text.data() + text.size();
    // from_chars takes no sign or "0x" for base 16, so a "+1" or "0x1" is
    // refused by the `p == end` check rather than half-read.
    const auto [p, ec] = std::from_chars(text.data(), end, id, 16);
    if (text.empty() || text.size() > 16 || ec != std::errc() || p != end) {
        return std::nullopt;
    }
    return id;
}

void log_session_open(const SessionInfo& s) {
    log::event(Level::Info, log::Ev::SessionOpen,
               {{"SESSION_ID", session_hex(s.id)},
                {"SERVICE", s.service},
                {"CLIENT_ADDR", s.client.ip().to_string()},
                {"CLIENT_PORT", std::to_string(s.client.port())},
                {"LISTEN_ADDR", s.listen.to_string()},
                {"AGENT", s.agent}},
               fmt::format("session {} from {} to {}", session_hex(s.id), s.client.to_string(),
                           s.service));
}

void log_session_close(const SessionInfo& s, const io::SessionEnd& end) {
    log::event(Level::Info, log::Ev::SessionClose,
               {{"SESSION_ID", session_hex(s.id)},
                {"SERVICE", s.service},
                {"CLIENT_ADDR", s.client.ip().to_string()},
                {"CLIENT_PORT", std::to_string(s.client.port())},
                {"LISTEN_ADDR", s.listen.to_string()},
                {"AGENT", s.agent},
                {"BYTES_UP", std::to_string(end.bytes_up)},
                {"BYTES_DOWN", std::to_string(end.bytes_down)},
                {"DURATION_MS", std::to_string(end.duration.count())},
                {"REASON", std::string(end.reason)}},
               fmt::format("session {} closed ({}): {} bytes up, {} down", session_hex(s.id),
                           end.reason, end.bytes_up, end.bytes_down));
}

}  // namespace sp::relay
