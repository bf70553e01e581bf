// SPDX-License-Identifier: Apache-2.0
// Who may open a session through the relay: per-service client rules and the
// relay's limits (SPEC [limits]). Consulted once per accepted client by every
// worker, so it is thread-safe; it is never touched per byte.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/addr.hpp"
#include "base/log_limiter.hpp"

namespace sp::relay {

/// True when `client` passes a service's rules: deny wins over allow, and an
/// empty allow list allows everyone.
[[nodiscard]] bool client_allowed(const IpAddress& client, const std::vector<Cidr>& allow,
                                  const std::vector<Cidr>& deny) noexcept;

enum class Verdict { Admit, Limit, Rate };

struct AdmissionLimits {
    uint32_t max_sessions = 100000;
    uint32_t max_sessions_per_client = 0;            // 0 = unlimited
    uint32_t max_new_sessions_per_client_per_s = 0;  // 0 = unlimited
};

class Admission final {
public:
    using Clock = std::chrono::steady_clock;

    explicit Admission(AdmissionLimits limits) : limits_(limits) {}

    /// Takes a session slot for `client` on `service` (whose own cap is
    /// `service_max`, 0 = none) or says why not. Admit must be paired with
    /// exactly one release() when the session ends.
    [[nodiscard]] Verdict admit(const IpAddress& client, const std::string& service,
                                uint32_t service_max, Clock::time_point now);
    void release(const IpAddress& client, const std::string& service) noexcept;

    /// New limits apply to new sessions; established ones are not cut.
    void set_limits(AdmissionLimits limits);
    [[nodiscard]] uint64_t sessions() const;

private:
    struct PerClient {
        uint32_t sessions = 0;
        double tokens = 0;
        Clock::time_point refilled{};
    };

    mutable std::mutex mu_;
    AdmissionLimits limits_;
    uint64_t total_ = 0;
    std::unordered_map<std::string, uint32_t> per_service_;
    std::unordered_map<std::string, PerClient> per_client_;
    Clock::time_point last_sweep_{};

public:
    /// Past this many tracked addresses, admit() sweeps entries that hold no
    /// session and whose rate bucket is full again, at most once a second:
    /// amortized O(1) per call under a flood spread over many addresses.
    static constexpr size_t kSweepAbove = 65536;
    /// Hard bound: when a flood fills the table within one second, a new
    /// address is admitted on the global and per-service limits alone until
    /// the next sweep (its per-client limits cannot be tracked then).
    static constexpr size_t kMaxClients = 262144;
    [[nodiscard]] size_t tracked_clients() const;
};

using log::LogLimiter;  // moved to base; the relay names it unqualified

}  // namespace sp::relay
