// SPDX-License-Identifier: Apache-2.0
// Flood control for log lines about outside parties (refused clients, bad
// agents): a few lines per key and window, the rest counted and reported on
// the next line that goes out. Not thread-safe: one per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace sp::log {

class LogLimiter final {
public:
    using Clock = std::chrono::steady_clock;

    /// Keys tracked at once. Past this, within one window, new keys share one
    /// overflow slot: a flood spread over many addresses is then limited as a
    /// whole instead of growing the table without bound.
    static constexpr size_t kMaxKeys = 10000;

    LogLimiter(uint32_t burst, std::chrono::milliseconds window) : burst_(burst), window_(window) {}

    /// Lets through at most `burst` lines per key per window. Returns -1 to
    /// suppress, else how many lines of this key were suppressed since the
    /// last one that went out (usually 0). Amortized O(1): the table is swept
    /// at most once per window.
    [[nodiscard]] int64_t allow(const std::string& key, Clock::time_point now);

    /// What a line that went out says of `held` (allow()'s result):
    /// " (N similar refusals of this address not logged)", or "" for 0.
    [[nodiscard]] static std::string held_note(int64_t held);

    [[nodiscard]] size_t tracked() const noexcept { return slots_.size(); }

private:
    struct Slot {
        Clock::time_point start{};
        uint32_t sent = 0;
        int64_t suppressed = 0;
    };
    [[nodiscard]] int64_t allow_slot(Slot& s, Clock::time_point now);

    uint32_t burst_;
    std::chrono::milliseconds window_;
    std::unordered_map<std::string, Slot> slots_;
    Slot overflow_;
    Clock::time_point last_sweep_{};
};

}  // namespace sp::log
