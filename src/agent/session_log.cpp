// SPDX-License-Identifier: Apache-2.0
#include "agent/session_log.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"

namespace sp::agent {

using log::Level;

namespace {

std::string hex_id(uint64_t id) {
    return fmt::format("{:016x}", id);
}

}  // namespace

std::string errno_reason(int err) {
    err = std::abs(err);
    if (err == ETIMEDOUT) {
        return "timeout";
    }
    if (const char* name = ::strerrorname_np(err)) {
        return name;
    }
    return fmt::format("errno-{}", err);
}

void log_session_open(const SessionInfo& s) {
    const std::string sid = hex_id(s.session_id);
    log::event(Level::Info, "session-open",
               {{"SESSION_ID", sid},
                {"SERVICE", s.service},
                {"CLIENT_ADDR", s.client.ip().to_string()},
                {"CLIENT_PORT", std::to_string(s.client.port())},
                {"LISTEN_ADDR", s.listen_addr},
                {"BACKEND_ADDR", s.backend_addr},
                {"RELAY_ADDR", s.relay_addr}},
               fmt::format("session {} from {} to {} via {}", sid, s.client.to_string(),
                           s.backend_addr, s.relay_addr));
}

void log_session_close(const SessionInfo& s, const io::SessionEnd& end) {
    const std::string sid = hex_id(s.session_id);
    log::event(Level::Info, "session-close",
               {{"SESSION_ID", sid},
                {"SERVICE", s.service},
                {"CLIENT_ADDR", s.client.ip().to_string()},
                {"CLIENT_PORT", std::to_string(s.client.port())},
                {"LISTEN_ADDR", s.listen_addr},
                {"BACKEND_ADDR", s.backend_addr},
                {"RELAY_ADDR", s.relay_addr},
                {"BYTES_UP", std::to_string(end.bytes_up)},
                {"BYTES_DOWN", std::to_string(end.bytes_down)},
                {"DURATION_MS", std::to_string(end.duration.count())},
                {"REASON", std::string(end.reason)}},
               fmt::format("session {} closed ({}): {} bytes up, {} down", sid, end.reason,
                           end.bytes_up, end.bytes_down));
}

void log_backend_failed(const SessionInfo& s, std::string_view failed, int err,
                        std::string_view taken_by) {
    const std::string sid = hex_id(s.session_id);
    const std::string reason = errno_reason(err);
    log::event(Level::Warn, "backend-failed",
               {{"SESSION_ID", sid},
                {"SERVICE", s.service},
                {"CLIENT_ADDR", s.client.ip().to_string()},
                {"BACKEND_ADDR", std::string(failed)},
                {"FALLBACK_ADDR", std::string(taken_by)},
                {"RELAY_ADDR", s.relay_addr},
                {"REASON", reason}},
               taken_by.empty()
                   ? fmt::format("session {}: backend {} of \"{}\" failed ({}) and no other "
                                 "took it; closing the client",
                                 sid, failed, s.service, reason)
                   : fmt::format("session {}: backend {} of \"{}\" failed ({}); {} took it", sid,
                                 failed, s.service, reason, taken_by));
}

}  // namespace sp::agent
