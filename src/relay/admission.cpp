// SPDX-License-Identifier: Apache-2.0
#include "relay/admission.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace sp::relay {

bool client_allowed(const IpAddress& client, const std::vector<Cidr>& allow,
                    const std::vector<Cidr>& deny) noexcept {
    for (const auto& c : deny) {
        if (c.contains(client)) {
            return false;
        }
    }
    if (allow.empty()) {
        return true;
    }
    return std::any_of(allow.begin(), allow.end(),
                       [&](const Cidr& c) { return c.contains(client); });
}

Verdict Admission::admit(const IpAddress& client, const std::string& service, uint32_t service_max,
                         Clock::time_point now) {
    const std::string key = client.unmapped().to_string();
    const std::lock_guard lock(mu_);
    if (limits_.max_sessions != 0 && total_ >= limits_.max_sessions) {
        return Verdict::Limit;
    }
    uint32_t& svc = per_service_[service];
    if (service_max != 0 && svc >= service_max) {
        return Verdict::Limit;
    }
    if (per_client_.size() > kSweepAbove && now - last_sweep_ >= std::chrono::seconds(1)) {
        // A bucket untouched for a second is full again: the entry says
        // nothing an absent one would not.
        std::erase_if(per_client_, [&](const auto& kv) {
            return kv.second.sessions == 0 && now - kv.second.refilled >= std::chrono::seconds(1);
        });
        last_sweep_ = now;
    }
    auto found = per_client_.find(key);
    if (found == per_client_.end() && per_client_.size() >= kMaxClients) {
        ++svc;
        ++total_;
        return Verdict::Admit;
    }
    PerClient& pc = found != per_client_.end() ? found->second : per_client_[key];
    if (limits_.max_sessions_per_client != 0 && pc.sessions >= limits_.max_sessions_per_client) {
        return Verdict::Limit;
    }
    if (const uint32_t rate = limits_.max_new_sessions_per_client_per_s; rate != 0) {
        // Token bucket holding one second's worth: a client may burst to
        // `rate` at once, then `rate` per second on average.
        if (pc.refilled == Clock::time_point{}) {
            pc.tokens = rate;
        } else {
            const double secs = std::chrono::duration<double>(now - pc.refilled).count();
            pc.tokens = std::min<double>(rate, pc.tokens + secs * rate);
        }
        pc.refilled = now;
        if (pc.tokens < 1.0) {
            return Verdict::Rate;
        }
        pc.tokens -= 1.0;
    }
    ++pc.sessions;
    ++svc;
    ++total_;
    return Verdict::Admit;
}

void Admission::release(const IpAddress& client, const std::string& service) noexcept {
    const std::string key = client.unmapped().to_string();
    const std::lock_guard lock(mu_);
    if (total_ > 0) {
        --total_;
    }
    if (auto it = per_service_.find(service); it != per_service_.end() && it->second > 0) {
        --it->second;
    }
    if (auto it = per_client_.find(key); it != per_client_.end()) {
        if (it->second.sessions > 0) {
            --it->second.sessions;
        }
        // Forget idle clients whose bucket would be full again, so the table
        // holds only addresses with sessions or recent activity.
        if (it->second.sessions == 0 && limits_.max_new_sessions_per_client_per_s == 0) {
            per_client_.erase(it);
        }
    }
}

size_t Admission::tracked_clients() const {
    const std::lock_guard lock(mu_);
    return per_client_.size();
}

void Admission::set_limits(AdmissionLimits limits) {
    const std::lock_guard lock(mu_);
    limits_ = limits;
}

uint64_t Admission::sessions() const {
    const std::lock_guard lock(mu_);
    return total_;
}

}  // namespace sp::relay
