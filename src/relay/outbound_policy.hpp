// SPDX-License-Identifier: Apache-2.0
// The forward proxy's decisions as pure code (control-protocol.md sections
// 9, 10 and 7.3): which requests the allow list can never admit (checked
// before any DNS), how many outbound sessions are open relay-wide and per
// agent, and which resolved addresses a request may be connected to. No
// socket, no clock, no thread: relay/outbound.hpp carries them out.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.hpp"
#include "config/relay_config.hpp"
#include "control/frame.hpp"

namespace sp::relay {

/// What an OUTBOUND_REQUEST names, once it passed the syntax check: a
/// literal address (needs no DNS) or a name.
struct OutboundTarget {
    std::string host;             // as requested, brackets of "[v6]" removed
    std::optional<IpAddress> ip;  // set for a literal
    uint16_t port = 0;
    /// "host:port" as requested ("[v6]:port" for a v6 literal): DESTINATION.
    [[nodiscard]] std::string destination() const;
};

/// Parses the request's host: an IPv4/IPv6 literal (a v6 one with or
/// without brackets) or a DNS name of 1-253 characters of [A-Za-z0-9.-_]
/// (what a log field may carry). nullopt for anything else, and for port 0.
[[nodiscard]] std::optional<OutboundTarget> parse_target(std::string_view host, uint16_t port);

/// Open outbound sessions, relay-wide and per agent name: a slot is taken
/// when a request passes the allow list and given back when it fails or
/// its session ends. Single-threaded (the control thread).
class OutboundCounts final {
public:
    struct Limits {
        uint32_t total = 0;      // max_outbound_sessions, 0 = unlimited
        uint32_t per_agent = 0;  // max_outbound_sessions_per_agent, 0 = unlimited
    };
    /// Takes a slot for `agent` unless either limit is reached. Limits
    /// lowered by a reload refuse new requests only; open ones go on.
    [[nodiscard]] bool acquire(const std::string& agent, Limits limits);
    /// Gives back a slot acquire() granted (unknown agents are ignored).
    void release(const std::string& agent);
    [[nodiscard]] uint64_t total() const noexcept { return total_; }
    [[nodiscard]] uint64_t of(const std::string& agent) const;

private:
    uint64_t total_ = 0;
    std::map<std::string, uint64_t, std::less<>> per_agent_;
};

/// The checks made before any name is resolved, in this order: the allow
/// list is empty (Disabled); the target is refused by it (Denied): a
/// literal no rule admits, or a name that no name rule for that port
/// matches while no CIDR rule covers the port either; the limits (Limit,
/// a slot is taken from `counts` only on Ok). Ok: go on and resolve.
[[nodiscard]] control::OutboundStatus outbound_precheck(const config::RelayConfig& cfg,
                                                        const OutboundTarget& target,
                                                        const std::string& agent,
                                                        OutboundCounts& counts);

/// The addresses the relay may connect to for `target`, in the resolver's
/// order, duplicates removed: every candidate is checked with
/// config::outbound_allowed (the name, the address and the port), so a name
/// that resolves into a range no rule admits yields nothing (no
/// DNS-rebinding escape). For a literal, `resolved` is ignored.
[[nodiscard]] std::vector<SocketAddress> allowed_addresses(const config::RelayConfig& cfg,
                                                           const OutboundTarget& target,
                                                           const std::vector<IpAddress>& resolved);

/// The REASON word of outbound-rejected for a status that is not Ok
/// (sallyport(7)): Denied is "not-allowed".
[[nodiscard]] std::string_view rejected_reason(control::OutboundStatus s) noexcept;

}  // namespace sp::relay
