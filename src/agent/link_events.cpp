// SPDX-License-Identifier: Apache-2.0
#include "agent/link_events.hpp"

#include <fmt/format.h>

#include "base/events.hpp"

namespace sp::agent {

using log::Ev;
using log::Level;
namespace f = log::f;

void log_relay_connected(const std::string& relay, const std::string& key_id,
                         const control::link_do::Connected& c) {
    log::event(Ev::RelayConnected, {{f::kRelayAddr, relay}, {f::kKeyId, key_id}},
               fmt::format("connected to relay {} (software {}, protocol {}, heartbeat {} ms)",
                           relay, c.software_version, c.version, c.heartbeat_ms));
}

void log_relay_disconnected(const std::string& relay,
                            std::optional<std::chrono::milliseconds> up_for,
                            const control::link_do::Disconnected& d) {
    log::event(d.error ? Level::Error : Level::Warn, Ev::RelayDisconnected,
               {{f::kRelayAddr, relay},
                {f::kDurationMs, up_for ? std::to_string(up_for->count()) : std::string()},
                {f::kReason, std::string(control::to_string(d.reason))}},
               d.retry_in ? fmt::format("relay {}: {}; retrying in {:.1f} s", relay, d.detail,
                                        static_cast<double>(d.retry_in->count()) / 1000.0)
                          : fmt::format("relay {}: {}", relay, d.detail));
}

void log_config_result(const std::string& relay, const control::ConfigResult& r) {
    size_t ok = 0;
    for (const auto& l : r.results) {
        if (l.status == control::ListenStatus::Ok) {
            ++ok;
            continue;
        }
        log::event(Ev::ConfigRejected,
                   {{f::kRelayAddr, relay},
                    {f::kService, l.service},
                    {f::kListenAddr, l.listen},
                    {f::kReason, std::string(control::to_string(l.status))}},
                   fmt::format("relay {} refused {} of service \"{}\": {}", relay, l.listen,
                               l.service, l.message));
    }
    log::event(Ev::ConfigApplied, {{f::kRelayAddr, relay}},
               fmt::format("relay {} applied config generation {}: {} of {} listen entries active",
                           relay, r.generation, ok, r.results.size()));
}

}  // namespace sp::agent
