// SPDX-License-Identifier: Apache-2.0
#include "base/log_limiter.hpp"

#include <fmt/format.h>

namespace sp::log {

std::string LogLimiter::held_note(int64_t held) {
    return held > 0 ? fmt::format(" ({} similar refusals of this address not logged)", held)
                    : std::string();
}

int64_t LogLimiter::allow_slot(Slot& s, Clock::time_point now) {
    if (now - s.start > window_) {
        const int64_t held = s.suppressed;
        s = Slot{now, 1, 0};
        return held;
    }
    if (s.sent < burst_) {
        ++s.sent;
        return 0;
    }
    ++s.suppressed;
    return -1;
}

int64_t LogLimiter::allow(const std::string& key, Clock::time_point now) {
    if (const auto it = slots_.find(key); it != slots_.end()) {
        return allow_slot(it->second, now);
    }
    if (slots_.size() >= kMaxKeys && now - last_sweep_ > window_) {
        // Slots idle for a whole window hold nothing worth reporting beyond
        // their count, which is lost: acceptable for a log limiter. Sweeping
        // at most once a window keeps the cost amortized O(1) per call.
        std::erase_if(slots_, [&](const auto& kv) { return now - kv.second.start > window_; });
        last_sweep_ = now;
    }
    if (slots_.size() >= kMaxKeys) {
        return allow_slot(overflow_, now);
    }
    return allow_slot(slots_[key], now);
}

}  // namespace sp::log
