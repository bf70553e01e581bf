// SPDX-License-Identifier: Apache-2.0
#include "base/log_limiter.hpp"

#include <string>

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using sp::log::LogLimiter;

TEST_SUITE("base.log_limiter") {
    TEST_CASE("log limiter: bursts per key then counts what it held back") {
        LogLimiter l(3, 1000ms);
        const auto t0 = LogLimiter::Clock::now();
        int sent = 0;
        for (int i = 0; i < 100; ++i) {
            if (l.allow("203.0.113.9", t0) >= 0) {
                ++sent;
            }
        }
        CHECK(sent == 3);
        CHECK(l.allow("198.51.100.1", t0) == 0);
        CHECK(l.allow("203.0.113.9", t0 + 1500ms) == 97);
        CHECK(LogLimiter::held_note(97) == " (97 similar refusals of this address not logged)");
        CHECK(LogLimiter::held_note(0).empty());
    }

    TEST_CASE("log limiter: a flood over many addresses stays bounded and still limited") {
        LogLimiter l(1, 1000ms);
        const auto t0 = LogLimiter::Clock::now();
        int sent = 0;
        const int addresses = static_cast<int>(LogLimiter::kMaxKeys) * 3;
        for (int i = 0; i < addresses; ++i) {
            if (l.allow("10.0." + std::to_string(i), t0) >= 0) {
                ++sent;
            }
        }
        CHECK(l.tracked() == LogLimiter::kMaxKeys);
        // Every tracked key got its line; the overflow shares one burst.
        CHECK(sent == static_cast<int>(LogLimiter::kMaxKeys) + 1);
        // A window later the stale keys are swept and new ones tracked again.
        CHECK(l.allow("192.0.2.1", t0 + 1500ms) == 0);
        CHECK(l.tracked() == 1);
    }
}
