// SPDX-License-Identifier: Apache-2.0
// metrics_listen, the optional Prometheus endpoint of both daemons
// ([relay] and [agent] tables): one literal HOST:PORT, "" for off.
#pragma once

#include <optional>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "config/parse_util.hpp"

namespace sp::config::detail {

/// Reads `metrics_listen` of the table `r` when present: "" leaves
/// `ret_addr` empty (off, the default); anything else must be a literal
/// IPv4 or [IPv6] address with a port from 1 to 65535 (no name, no range;
/// HostPorts::parse refuses port 0), else an error at the value's
/// FILE:LINE:COL.
[[nodiscard]] Result<void> read_metrics_listen(const TableReader& r,
                                               std::optional<SocketAddress>& ret_addr);

}  // namespace sp::config::detail
