// SPDX-License-Identifier: Apache-2.0
// What a reload could not change. Each daemon lists the keys of its file
// that only a restart applies and that the new file changed; they keep
// their running values, the rest of the file applies, and the admin is told
// which keys and why (reload-failed REASON=restart-only, and the reply to
// `sallyportctl reload`) - never a silent ignore.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "daemon/admin.hpp"

namespace sp::daemon {

struct KeptKey {
    std::string key;  // dotted path, "relay.threads"
    std::string why;  // "the worker threads are created at start"
};

/// Logs reload-failed naming every kept key, and returns the error for the
/// reload's caller; nullopt (and nothing logged) when `kept` is empty.
[[nodiscard]] std::optional<Error> report_kept_keys(const std::vector<KeptKey>& kept);

/// Moves the status socket and the metrics endpoint to the reloaded file's
/// places (`section` names the table, "relay" or "agent"). One that cannot
/// be opened there keeps its running place (`ret_*_now` is set back to the
/// running value) and is logged as reload-failed REASON=bind; the error is
/// returned for the reload's caller.
[[nodiscard]] std::optional<Error> move_admin(Admin& admin, std::string_view section,
                                              const std::string& status_now,
                                              std::string& ret_status_new,
                                              const std::optional<SocketAddress>& metrics_now,
                                              std::optional<SocketAddress>& ret_metrics_new);

}  // namespace sp::daemon
