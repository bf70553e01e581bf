// SPDX-License-Identifier: Apache-2.0
#include "relay/admission.hpp"

#include <string>

#include <doctest/doctest.h>

using namespace sp::relay;
using namespace std::chrono_literals;

namespace {
sp::IpAddress ip(const char* s) {
    return *sp::IpAddress::parse(s);
}
std::vector<sp::Cidr> cidrs(std::initializer_list<const char*> l) {
    std::vector<sp::Cidr> out;
    for (const char* s : l) {
        out.push_back(*sp::Cidr::parse(s));
    }
    return out;
}
}  // namespace

TEST_SUITE("relay.admission") {
    TEST_CASE("admission: deny wins, empty allow allows all, v6 and mapped v4") {
        CHECK(client_allowed(ip("203.0.113.9"), {}, {}));
        CHECK_FALSE(client_allowed(ip("203.0.113.9"), {}, cidrs({"203.0.113.0/24"})));
        CHECK_FALSE(
            client_allowed(ip("203.0.113.9"), cidrs({"0.0.0.0/0"}), cidrs({"203.0.113.9"})));
        CHECK(client_allowed(ip("198.51.100.1"), cidrs({"198.51.100.0/24"}), {}));
        CHECK_FALSE(client_allowed(ip("198.51.101.1"), cidrs({"198.51.100.0/24"}), {}));
        CHECK(client_allowed(ip("::ffff:198.51.100.1"), cidrs({"198.51.100.0/24"}), {}));
        CHECK(client_allowed(ip("2001:db8::7"), cidrs({"2001:db8::/32"}), {}));
        CHECK_FALSE(
            client_allowed(ip("2001:db8::7"), cidrs({"2001:db8::/32"}), cidrs({"2001:db8::/64"})));
    }

    TEST_CASE("admission: global, per-service and per-client caps, released on close") {
        Admission a({3, 2, 0});
        const auto now = Admission::Clock::now();
        CHECK(a.admit(ip("10.0.0.1"), "s", 0, now) == Verdict::Admit);
        CHECK(a.admit(ip("10.0.0.1"), "s", 0, now) == Verdict::Admit);
        CHECK(a.admit(ip("10.0.0.1"), "s", 0, now) == Verdict::Limit);  // per client
        CHECK(a.admit(ip("10.0.0.2"), "t", 1, now) == Verdict::Admit);
        CHECK(a.admit(ip("10.0.0.3"), "t", 1, now) == Verdict::Limit);  // global (3)
        a.release(ip("10.0.0.1"), "s");
        CHECK(a.admit(ip("10.0.0.3"), "t", 1, now) == Verdict::Limit);  // per service
        CHECK(a.admit(ip("10.0.0.3"), "s", 0, now) == Verdict::Admit);
        CHECK(a.sessions() == 3);
    }

    TEST_CASE("admission: token bucket refuses bursts beyond the rate, refills with time") {
        Admission a({0, 0, 5});
        const auto t0 = Admission::Clock::now();
        int admitted = 0;
        for (int i = 0; i < 20; ++i) {
            if (a.admit(ip("192.0.2.1"), "s", 0, t0) == Verdict::Admit) {
                ++admitted;
            }
        }
        CHECK(admitted == 5);
        CHECK(a.admit(ip("192.0.2.1"), "s", 0, t0) == Verdict::Rate);
        CHECK(a.admit(ip("192.0.2.2"), "s", 0, t0) == Verdict::Admit);  // others unaffected
        CHECK(a.admit(ip("192.0.2.1"), "s", 0, t0 + 1s) == Verdict::Admit);
    }

    TEST_CASE("admission: a flood over many addresses keeps the client table bounded") {
        Admission a({0, 0, 5});
        const auto t0 = Admission::Clock::now();
        // Each address opens one session that ends at once: with a rate limit
        // its bucket entry stays, until a sweep a second later drops it.
        const size_t n = Admission::kSweepAbove + 1000;
        for (size_t i = 0; i < n; ++i) {
            const std::string text = "10." + std::to_string((i >> 16) & 255) + "." +
                                     std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
            const auto addr = ip(text.c_str());
            REQUIRE(a.admit(addr, "s", 0, t0) == Verdict::Admit);
            a.release(addr, "s");
        }
        CHECK(a.tracked_clients() == n);
        CHECK(a.admit(ip("192.0.2.7"), "s", 0, t0 + 2s) == Verdict::Admit);
        CHECK(a.tracked_clients() == 1);
        // Limits still hold for the address that is tracked.
        for (int i = 0; i < 4; ++i) {
            CHECK(a.admit(ip("192.0.2.7"), "s", 0, t0 + 2s) == Verdict::Admit);
        }
        CHECK(a.admit(ip("192.0.2.7"), "s", 0, t0 + 2s) == Verdict::Rate);
    }
}
