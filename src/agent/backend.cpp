// SPDX-License-Identifier: Apache-2.0
#include "agent/backend.hpp"

#include <fmt/format.h>

namespace sp::agent {

namespace {

// Rendezvous (highest random weight) score of backend `index` for a client:
// every shard computes the same order from the same inputs, so a client's
// connections agree on a backend without shared state (an FTP data
// connection may arrive on another worker than its control connection).
uint64_t rendezvous(const std::string& client, size_t index) noexcept {
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
    for (const char c : client) {
        h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
    }
    h ^= (index + 1) * 0x9e3779b97f4a7c15ULL;  // splitmix64 finaliser
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

}  // namespace

std::string BackendTarget::to_string() const {
    if (host.find(':') != std::string::npos) {
        return fmt::format("[{}]:{}", host, port);
    }
    return fmt::format("{}:{}", host, port);
}

BackendSelector::BackendSelector(std::vector<HostPorts> listen, std::vector<HostPorts> backends,
                                 std::chrono::seconds affinity, std::chrono::seconds fail_hold)
    : listen_(std::move(listen)),
      backends_(std::move(backends)),
      affinity_(affinity),
      fail_hold_(fail_hold),
      failed_until_(backends_.size()),
      down_(backends_.size(), 0) {}

std::optional<uint32_t> BackendSelector::offset_of(uint16_t listen_port) const {
    // Offsets run across the listen entries in order, so "0.0.0.0:21" plus
    // "0.0.0.0:30000-30009" map onto backend "host:21" and "host:30000-30009".
    for (const auto& l : listen_) {
        if (l.ports.contains(listen_port)) {
            return listen_port - l.ports.first;
        }
    }
    return std::nullopt;
}

BackendTarget BackendSelector::target(size_t index, uint32_t offset) const {
    const auto& b = backends_[index];
    // A single-port backend takes every port of a listen range.
    const uint32_t port = b.ports.size() == 1 ? b.ports.first : b.ports.first + offset;
    return {b.host, static_cast<uint16_t>(port), index};
}

std::optional<BackendTarget> BackendSelector::pick(const IpAddress& client, uint16_t listen_port,
                                                   Clock::time_point now) {
    const auto offset = offset_of(listen_port);
    if (!offset || backends_.empty()) {
        return std::nullopt;
    }
    const std::string key = client.unmapped().to_string();
    if (affinity_.count() > 0) {
        if (const auto it = sticky_.find(key); it != sticky_.end()) {
            if (it->second.until > now && healthy(it->second.index, now)) {
                it->second.until = now + affinity_;
                return target(it->second.index, *offset);
            }
            sticky_.erase(it);
        }
        if (sticky_.size() > 100000) {  // bound memory under a flood of client IPs
            std::erase_if(sticky_, [&](const auto& kv) { return kv.second.until <= now; });
        }
    }
    size_t chosen = next_ % backends_.size();
    if (affinity_.count() > 0) {
        // The healthy backend with the highest score; every backend if none is.
        bool any_healthy = false;
        uint64_t best = 0;
        for (size_t idx = 0; idx < backends_.size(); ++idx) {
            const bool ok = healthy(idx, now);
            const uint64_t score = rendezvous(key, idx);
            if ((ok && !any_healthy) || (ok == any_healthy && score > best)) {
                chosen = idx;
                best = score;
                any_healthy = any_healthy || ok;
            }
        }
        sticky_[key] = {chosen, now + affinity_};
        return target(chosen, *offset);
    }
    for (size_t i = 0; i < backends_.size(); ++i) {
        const size_t idx = (next_ + i) % backends_.size();
        if (healthy(idx, now)) {
            chosen = idx;
            break;
        }
    }
    next_ = chosen + 1;
    return target(chosen, *offset);
}

std::optional<BackendTarget> BackendSelector::next_after(const BackendTarget& failed,
                                                         uint16_t listen_port, size_t tried) {
    const auto offset = offset_of(listen_port);
    if (!offset || tried >= backends_.size()) {
        return std::nullopt;
    }
    return target((failed.index + 1) % backends_.size(), *offset);
}

void BackendSelector::mark_failed(size_t index, Clock::time_point now) {
    if (index < failed_until_.size()) {
        failed_until_[index] = now + fail_hold_;
    }
}

void BackendSelector::set_down(size_t index, bool down) {
    if (index < down_.size()) {
        down_[index] = down ? 1 : 0;
    }
}

}  // namespace sp::agent
