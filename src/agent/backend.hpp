// SPDX-License-Identifier: Apache-2.0
// Picks the backend for one client session of a service without affinity:
// maps a listener port range onto the backend's range, rotates over the
// service's backends and skips ones that just failed. With affinity the
// choice is the owner shard's (agent/affinity.hpp); this only maps it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/addr.hpp"

namespace sp::agent {

struct BackendTarget {
    std::string host;  // a name or a literal
    uint16_t port = 0;
    size_t index = 0;  // which backend entry, for mark_failed
    [[nodiscard]] std::string to_string() const;
};

class BackendSelector final {
public:
    using Clock = std::chrono::steady_clock;

    BackendSelector(std::vector<HostPorts> listen, std::vector<HostPorts> backends,
                    std::chrono::seconds fail_hold);

    /// The next backend in rotation for a client that reached listener port
    /// `listen_port`, skipping failed ones while another is healthy.
    /// Returns nullopt when the port is in no listen entry.
    [[nodiscard]] std::optional<BackendTarget> pick(uint16_t listen_port, Clock::time_point now);
    /// Backend `index` for listener port `listen_port`; nullopt when the
    /// port is in no listen entry or the index is out of range.
    [[nodiscard]] std::optional<BackendTarget> at(size_t index, uint16_t listen_port) const;
    /// The next candidate after `failed` for the same session (after a
    /// refused connect), or nullopt when every backend has been tried.
    [[nodiscard]] std::optional<BackendTarget> next_after(const BackendTarget& failed,
                                                          uint16_t listen_port, size_t tried);
    void mark_failed(size_t index, Clock::time_point now);
    /// Health checks (agent/health_checker) took backend `index` down, or
    /// brought it back; it is skipped while down, like a failed one.
    void set_down(size_t index, bool down);
    [[nodiscard]] bool down(size_t index) const noexcept {
        return index < down_.size() && down_[index] != 0;
    }
    [[nodiscard]] size_t size() const noexcept { return backends_.size(); }
    /// False while backend `index` is skipped after a failed connect (for
    /// fail_hold) or is down by its health checks; an index out of range is
    /// not healthy.
    [[nodiscard]] bool healthy(size_t index, Clock::time_point now) const noexcept {
        return index < failed_until_.size() && failed_until_[index] <= now && down_[index] == 0;
    }
    /// The backend entries, as configured.
    [[nodiscard]] const std::vector<HostPorts>& backends() const noexcept { return backends_; }

private:
    [[nodiscard]] std::optional<uint32_t> offset_of(uint16_t listen_port) const;
    [[nodiscard]] BackendTarget target(size_t index, uint32_t offset) const;

    std::vector<HostPorts> listen_;
    std::vector<HostPorts> backends_;
    std::chrono::seconds fail_hold_;
    std::vector<Clock::time_point> failed_until_;
    std::vector<uint8_t> down_;  // by health checks: 1 = down
    size_t next_ = 0;
};

}  // namespace sp::agent
