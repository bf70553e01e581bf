// SPDX-License-Identifier: Apache-2.0
#include "agent/backend.hpp"

#include <fmt/format.h>

namespace sp::agent {

std::string BackendTarget::to_string() const {
    if (host.find(':') != std::string::npos) {
        return fmt::format("[{}]:{}", host, port);
    }
    return fmt::format("{}:{}", host, port);
}

BackendSelector::BackendSelector(std::vector<HostPorts> listen, std::vector<HostPorts> backends,
                                 std::chrono::seconds fail_hold)
    : listen_(std::move(listen)),
      backends_(std::move(backends)),
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

std::optional<BackendTarget> BackendSelector::pick(uint16_t listen_port, Clock::time_point now) {
    const auto offset = offset_of(listen_port);
    if (!offset || backends_.empty()) {
        return std::nullopt;
    }
    size_t chosen = next_ % backends_.size();
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

std::optional<BackendTarget> BackendSelector::at(size_t index, uint16_t listen_port) const {
    const auto offset = offset_of(listen_port);
    if (!offset || index >= backends_.size()) {
        return std::nullopt;
    }
    return target(index, *offset);
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
