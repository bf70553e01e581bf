// SPDX-License-Identifier: Apache-2.0
// The relay's session-open and session-close events (sallyport(7)): the
// fields both carry, in one place, so the two lines of a session always
// match and journalctl SESSION_ID=... finds both. Any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/addr.hpp"
#include "io/worker.hpp"

namespace sp::relay {

/// What identifies a session in its events.
struct SessionInfo {
    uint64_t id = 0;
    std::string service;
    SocketAddress client;
    SocketAddress listen;  // the relay listener the client reached
    std::string agent;
};

/// SESSION_ID as logged: 16 hex digits.
[[nodiscard]] std::string session_hex(uint64_t id);
/// The id of a SESSION_ID as an operator types it: 1 to 16 hex digits,
/// either case; nullopt for anything else.
[[nodiscard]] std::optional<uint64_t> parse_session_hex(std::string_view text) noexcept;
void log_session_open(const SessionInfo& s);
void log_session_close(const SessionInfo& s, const io::SessionEnd& end);

}  // namespace sp::relay
