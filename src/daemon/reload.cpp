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

std::optional<Error> move_admin(Admin& admin, std::string_view section,
                                const std::string& status_now, std::string& ret_status_new,
                                const std::optional<SocketAddress>& metrics_now,
                                std::optional<SocketAddress>& ret_metrics_new) {
    std::optional<Error> first;
    const auto failed = [&](std::string_view key, const Error& e, const std::string& kept) {
        log::event(log::Level::Error, log::Ev::ReloadFailed, {{log::f::kReason, "bind"}},
                   fmt::format("reload: {}.{} not moved, still {}: {}", section, key,
                               kept.empty() ? std::string("off") : kept, e.describe()));
        if (!first) {
            first = e;
        }
    };
    if (auto r = admin.move_socket(ret_status_new); !r) {
        failed("status_socket", r.error(), status_now);
        ret_status_new = status_now;
    }
    if (auto r = admin.move_metrics_http(ret_metrics_new); !r) {
        failed("metrics_listen", r.error(), metrics_now ? metrics_now->to_string() : "");
        ret_metrics_new = metrics_now;
    }
    return first;
}

}  // namespace sp::daemon
