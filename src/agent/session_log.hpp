// SPDX-License-Identifier: Apache-2.0
// The agent's session events (sallyport(7) EVENTS): session-open,
// session-close and backend-failed with the same fields everywhere, so one
// entry alone answers who, where and through which relay. SESSION_ID is the
// relay's, so "journalctl SESSION_ID=..." finds both ends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/addr.hpp"
#include "io/worker.hpp"

namespace sp::agent {

struct SessionInfo {
    uint64_t session_id = 0;
    std::string service;
    SocketAddress client;
    std::string listen_addr;   // the relay listener the client reached
    std::string backend_addr;  // the backend that took the session
    std::string relay_addr;    // RELAY_ADDR: the [[relay]] address as configured
};

/// "ECONNREFUSED", ..., "timeout" for ETIMEDOUT; `err` is a positive or
/// negative errno.
[[nodiscard]] std::string errno_reason(int err);

void log_session_open(const SessionInfo& s);
void log_session_close(const SessionInfo& s, const io::SessionEnd& end);
/// Backend `failed` refused the session with `err`; `taken_by` is the
/// backend that took it instead, empty when none did (the client is closed).
void log_backend_failed(const SessionInfo& s, std::string_view failed, int err,
                        std::string_view taken_by);
/// A client with sessions open on backend host `held` opened one that this
/// host could not take (it refused, or the service does not list it): the
/// session is refused, not moved to another host (REASON affinity-held).
void log_affinity_refused(const SessionInfo& s, std::string_view held);

}  // namespace sp::agent
