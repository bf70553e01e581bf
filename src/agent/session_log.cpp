// SPDX-License-Identifier: Apache-2.0
#include "agent/session_log.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/events.hpp"

namespace sp::agent {

using log::Ev;
namespace f = log::f;

namespace {

std::string hex_id(uint64_t id) {
    return fmt::format("{:016x}", id);
}

}  // namespace

std::string errno_reason(int err) {
    return log::errno_reason(err);
}

void log_session_open(const SessionInfo& s) {
    const std::string sid = hex_id(s.session_id);
    log::event(Ev::SessionOpen,
               {{f::kSessionId, sid},
                {f::kService, s.service},
                {f::kClientAddr, s.client.ip().to_string()},
                {f::kClientPort, std::to_string(s.client.port())},
                {f::kListenAddr, s.listen_addr},
                {f::kBackendAddr, s.backend_addr},
                {f::kRelayAddr, s.relay_addr}},
               fmt::format("session {} from {} to {} via {}", sid, s.client.to_string(),
                           s.backend_addr, s.relay_addr));
}

void log_session_close(const SessionInfo& s, const io::SessionEnd& end) {
    const std::string sid = hex_id(s.session_id);
    log::event(Ev::SessionClose,
               {{f::kSessionId, sid},
                {f::kService, s.service},
                {f::kClientAddr, s.client.ip().to_string()},
                {f::kClientPort, std::to_string(s.client.port())},
                {f::kListenAddr, s.listen_addr},
                {f::kBackendAddr, s.backend_addr},
                {f::kRelayAddr, s.relay_addr},
                {f::kBytesUp, std::to_string(end.bytes_up)},
                {f::kBytesDown, std::to_string(end.bytes_down)},
                {f::kDurationMs, std::to_string(end.duration.count())},
                {f::kReason, std::string(end.reason)}},
               fmt::format("session {} closed ({}): {} bytes up, {} down", sid, end.reason,
                           end.bytes_up, end.bytes_down));
}

void log_backend_failed(const SessionInfo& s, std::string_view failed, int err,
                        std::string_view taken_by) {
    const std::string sid = hex_id(s.session_id);
    const std::string reason = errno_reason(err);
    log::event(Ev::BackendFailed,
               {{f::kSessionId, sid},
                {f::kService, s.service},
                {f::kClientAddr, s.client.ip().to_string()},
                {f::kBackendAddr, std::string(failed)},
                {f::kFallbackAddr, std::string(taken_by)},
                {f::kRelayAddr, s.relay_addr},
                {f::kReason, reason}},
               taken_by.empty()
                   ? fmt::format("session {}: backend {} of \"{}\" failed ({}) and no other "
                                 "took it; closing the client",
                                 sid, failed, s.service, reason)
                   : fmt::format("session {}: backend {} of \"{}\" failed ({}); {} took it", sid,
                                 failed, s.service, reason, taken_by));
}

void log_affinity_refused(const SessionInfo& s, std::string_view held) {
    const std::string sid = hex_id(s.session_id);
    log::event(Ev::BackendFailed,
               {{f::kSessionId, sid},
                {f::kService, s.service},
                {f::kClientAddr, s.client.ip().to_string()},
                {f::kBackendAddr, std::string(held)},
                {f::kRelayAddr, s.relay_addr},
                {f::kReason, "affinity-held"}},
               fmt::format("session {}: client {} has sessions open on backend host {}, which "
                           "cannot take this one of \"{}\"; refused rather than sent to "
                           "another host (affinity_s)",
                           sid, s.client.ip().to_string(), held, s.service));
}

}  // namespace sp::agent
