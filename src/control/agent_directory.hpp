// SPDX-License-Identifier: Apache-2.0
// Which control connection holds each agent name on a relay, and who may
// take a name over (control-protocol.md section 5.1, replacement). Pure
// bookkeeping for the relay's control thread: no sockets, no logging.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sp::control {

class AgentDirectory final {
public:
    enum class Verdict : uint8_t {
        Granted,   // the name was free: `conn` holds it now
        Replaces,  // held by `holder` with the same identity: `conn` holds it now;
                   // feed Replaced to `holder`
        Conflict,  // held by `holder` with another identity: nothing changed
    };
    struct Claim {
        Verdict verdict = Verdict::Granted;
        uint64_t holder = 0;  // Replaces / Conflict: the connection holding the name
    };

    /// Claims `name` for connection `conn` authenticated as `identity`. A
    /// takeover needs BOTH the same name and the same non-empty identity:
    /// anyone else holding a valid key must not be able to knock an agent off
    /// by claiming its name, and a restarted agent (same key) must be able to
    /// replace its own half-dead connection.
    [[nodiscard]] Claim claim(const std::string& name, const std::string& identity, uint64_t conn);

    /// Gives `name` up if `conn` holds it (a replaced connection no longer
    /// does, so its late release changes nothing).
    void release(const std::string& name, uint64_t conn) noexcept;

    [[nodiscard]] std::optional<uint64_t> holder(const std::string& name) const;
    [[nodiscard]] size_t size() const noexcept { return names_.size(); }

private:
    struct Entry {
        uint64_t conn = 0;
        std::string identity;
    };
    std::unordered_map<std::string, Entry> names_;
};

}  // namespace sp::control
