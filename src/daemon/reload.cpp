// SPDX-License-Identifier: Apache-2.0
#include "daemon/reload.hpp"

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"

namespace sp::daemon {

std::optional<Error> report_kept_keys(const std::vector<KeptKey>& kept) {
    if (kept.empty()) {
        return std::nullopt;
    }
    std::string keys;
    std::string detail;
    for (const auto& k : kept) {
        keys += (keys.empty() ? "" : ", ") + k.key;
        detail += fmt::format("; {}: {}", k.key, k.why);
    }
    Error e;
    e.kind = ErrorKind::Config;
    e.key = kept.front().key;
    e.message = fmt::format(
        "{} changed only by a restart, keeping the running value{}; the rest of the file "
        "applied{}; a binary upgrade (SIGUSR2) applies it without closing sessions",
        keys, kept.size() > 1 ? "s" : "", detail);
    log::event(log::Level::Error, log::Ev::ReloadFailed, {{log::f::kReason, "restart-only"}},
               "reload: " + e.message);
    return e;
}

}  // namespace sp::daemon
