// SPDX-License-Identifier: Apache-2.0
#include <set>

#include <doctest/doctest.h>

#include "agent/backend.hpp"
#include "agent/backoff.hpp"

using namespace sp::agent;
using namespace std::chrono_literals;

namespace {
std::vector<sp::HostPorts> hps(std::initializer_list<const char*> l) {
    std::vector<sp::HostPorts> out;
    for (const char* s : l) {
        out.push_back(*sp::HostPorts::parse(s, true));
    }
    return out;
}
const sp::IpAddress kClientA = *sp::IpAddress::parse("203.0.113.9");
const sp::IpAddress kClientB = *sp::IpAddress::parse("198.51.100.7");
}  // namespace

TEST_SUITE("agent.backoff") {
    TEST_CASE("backoff: grows, stays within [d/2, d], caps and resets") {
        Backoff b(500ms, 30s, 42);
        auto expect = 500ms;
        for (int i = 0; i < 12; ++i) {
            const auto d = b.next();
            CHECK(d >= expect / 2);
            CHECK(d <= expect);
            expect = std::min<std::chrono::milliseconds>(expect * 2, 30s);
        }
        CHECK(b.next() <= 30s);
        b.reset();
        CHECK(b.next() <= 500ms);
    }

    TEST_CASE("backoff: different seeds spread out") {
        std::set<int64_t> seen;
        for (uint64_t seed = 1; seed <= 20; ++seed) {
            Backoff b(1000ms, 30s, seed * 7919);
            (void)b.next();
            seen.insert(b.next().count());
        }
        CHECK(seen.size() > 10);
    }
}

TEST_SUITE("agent.backend") {
    TEST_CASE("backend: round-robin over backends") {
        BackendSelector s(hps({"0.0.0.0:2222"}), hps({"10.0.0.1:22", "10.0.0.2:22"}), 0s, 5s);
        const auto now = BackendSelector::Clock::now();
        CHECK(s.pick(kClientA, 2222, now)->host == "10.0.0.1");
        CHECK(s.pick(kClientA, 2222, now)->host == "10.0.0.2");
        CHECK(s.pick(kClientA, 2222, now)->host == "10.0.0.1");
        CHECK_FALSE(s.pick(kClientA, 2223, now));
    }

    TEST_CASE("backend: a failed backend is skipped until its hold expires") {
        BackendSelector s(hps({"0.0.0.0:2222"}), hps({"10.0.0.1:22", "10.0.0.2:22"}), 0s, 5s);
        const auto now = BackendSelector::Clock::now();
        s.mark_failed(0, now);
        CHECK(s.pick(kClientA, 2222, now)->host == "10.0.0.2");
        CHECK(s.pick(kClientA, 2222, now)->host == "10.0.0.2");
        CHECK(s.pick(kClientA, 2222, now + 6s)->host == "10.0.0.1");
    }

    TEST_CASE("backend: next_after walks each backend once") {
        BackendSelector s(hps({"0.0.0.0:80"}), hps({"a:80", "b:80", "c:80"}), 0s, 5s);
        const auto now = BackendSelector::Clock::now();
        auto t = s.pick(kClientA, 80, now);
        REQUIRE(t);
        size_t tried = 1;
        std::set<std::string> hosts{t->host};
        while (auto n = s.next_after(*t, 80, tried)) {
            hosts.insert(n->host);
            t = n;
            ++tried;
        }
        CHECK(hosts.size() == 3);
        CHECK(tried == 3);
    }

    TEST_CASE("backend: port ranges map by offset across listen entries") {
        BackendSelector s(hps({"0.0.0.0:21", "0.0.0.0:30000-30009"}), hps({"ftp.lan:21"}), 0s, 5s);
        const auto now = BackendSelector::Clock::now();
        CHECK(s.pick(kClientA, 21, now)->port == 21);
        BackendSelector r(hps({"0.0.0.0:30000-30009"}), hps({"10.0.5.20:40000-40009"}), 0s, 5s);
        CHECK(r.pick(kClientA, 30007, now)->port == 40007);
        CHECK(r.pick(kClientA, 30000, now)->to_string() == "10.0.5.20:40000");
    }

    TEST_CASE("backend: affinity keeps a client on one backend, others still rotate") {
        BackendSelector s(hps({"0.0.0.0:21"}), hps({"10.0.0.1:21", "10.0.0.2:21"}), 60s, 5s);
        const auto now = BackendSelector::Clock::now();
        const auto first = s.pick(kClientA, 21, now)->host;
        for (int i = 0; i < 5; ++i) {
            CHECK(s.pick(kClientA, 21, now + std::chrono::seconds(i))->host == first);
        }
        CHECK(s.pick(kClientB, 21, now)->host != first);
        CHECK(s.pick(kClientA, 21, now + 200s)->host == s.pick(kClientA, 21, now + 200s)->host);
    }

    TEST_CASE("backend: IPv6 backends print with brackets") {
        BackendSelector s(hps({"[::]:443"}), hps({"[2001:db8::5]:8443"}), 0s, 5s);
        CHECK(s.pick(kClientA, 443, BackendSelector::Clock::now())->to_string() ==
              "[2001:db8::5]:8443");
    }
}
