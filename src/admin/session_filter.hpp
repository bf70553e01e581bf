// SPDX-License-Identifier: Apache-2.0
// The `sessions` command's filters (--service S, --client CIDR), the same on
// the relay and the agent: parsed once from the request's args, before any
// worker is asked, and matched against each session on its worker.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "admin/args.hpp"
#include "admin/protocol.hpp"
#include "base/addr.hpp"

namespace sp::admin {

struct SessionFilter {
    std::optional<std::string> service;
    std::optional<Cidr> client;

    /// True when a session of `service_name` from `client_ip` passes. A
    /// v4-mapped client address matches a v4 network (Cidr::contains).
    [[nodiscard]] bool matches(std::string_view service_name,
                               const IpAddress& client_ip) const noexcept;
};

/// Reads "service" and "client" (both optional, nothing else allowed);
/// bad-args when "client" is not a CIDR.
[[nodiscard]] Outcome<SessionFilter> parse_session_filter(const Args& args);

}  // namespace sp::admin
