// SPDX-License-Identifier: Apache-2.0
#include <set>

#include <doctest/doctest.h>

#include "agent/backend.hpp"

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
}  // namespace

TEST_SUITE("agent.backend") {
    TEST_CASE("backend: round-robin over backends") {
        BackendSelector s(hps({"0.0.0.0:2222"}), hps({"10.0.0.1:22", "10.0.0.2:22"}), 5s);
        const auto now = BackendSelector::Clock::now();
        CHECK(s.pick(2222, now)->host == "10.0.0.1");
        CHECK(s.pick(2222, now)->host == "10.0.0.2");
        CHECK(s.pick(2222, now)->host == "10.0.0.1");
        CHECK_FALSE(s.pick(2223, now));
    }

    TEST_CASE("backend: a failed backend is skipped until its hold expires") {
        BackendSelector s(hps({"0.0.0.0:2222"}), hps({"10.0.0.1:22", "10.0.0.2:22"}), 5s);
        const auto now = BackendSelector::Clock::now();
        s.mark_failed(0, now);
        CHECK(s.pick(2222, now)->host == "10.0.0.2");
        CHECK(s.pick(2222, now)->host == "10.0.0.2");
        CHECK(s.pick(2222, now + 6s)->host == "10.0.0.1");
    }

    TEST_CASE("backend: a backend down by its checks is skipped until it is up again") {
        BackendSelector s(hps({"0.0.0.0:2222"}), hps({"10.0.0.1:22", "10.0.0.2:22"}), 5s);
        const auto now = BackendSelector::Clock::now();
        s.set_down(0, true);
        CHECK_FALSE(s.healthy(0, now));
        CHECK(s.healthy(1, now));
        // Unlike a failed connect, no hold expires it: only the checks do.
        for (int i = 0; i < 4; ++i) {
            CHECK(s.pick(2222, now + std::chrono::hours(i))->host == "10.0.0.2");
        }
        s.set_down(0, false);
        CHECK(s.healthy(0, now));
        std::set<std::string> hosts;
        for (int i = 0; i < 2; ++i) {
            hosts.insert(s.pick(2222, now)->host);
        }
        CHECK(hosts.size() == 2);
        s.set_down(7, true);  // out of range: ignored
        CHECK_FALSE(s.healthy(7, now));
    }

    TEST_CASE("backend: next_after walks each backend once") {
        BackendSelector s(hps({"0.0.0.0:80"}), hps({"a:80", "b:80", "c:80"}), 5s);
        const auto now = BackendSelector::Clock::now();
        auto t = s.pick(80, now);
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
        BackendSelector s(hps({"0.0.0.0:21", "0.0.0.0:30000-30009"}), hps({"ftp.lan:21"}), 5s);
        const auto now = BackendSelector::Clock::now();
        CHECK(s.pick(21, now)->port == 21);
        BackendSelector r(hps({"0.0.0.0:30000-30009"}), hps({"10.0.5.20:40000-40009"}), 5s);
        CHECK(r.pick(30007, now)->port == 40007);
        CHECK(r.pick(30000, now)->to_string() == "10.0.5.20:40000");
    }

    TEST_CASE("backend: at() maps a chosen index onto the listener's port") {
        BackendSelector s(hps({"0.0.0.0:21", "0.0.0.0:30000-30009"}),
                          hps({"10.0.0.1:21", "10.0.0.2:40000-40009"}), 5s);
        CHECK(s.at(0, 21)->to_string() == "10.0.0.1:21");
        CHECK(s.at(1, 30003)->to_string() == "10.0.0.2:40003");
        CHECK(s.at(1, 30003)->index == 1);
        CHECK_FALSE(s.at(2, 21));
        CHECK_FALSE(s.at(0, 22));
    }

    TEST_CASE("backend: IPv6 backends print with brackets") {
        BackendSelector s(hps({"[::]:443"}), hps({"[2001:db8::5]:8443"}), 5s);
        CHECK(s.pick(443, BackendSelector::Clock::now())->to_string() == "[2001:db8::5]:8443");
    }
}

#include "agent/proxy_header.hpp"

TEST_SUITE("agent.proxy_header") {
    TEST_CASE("proxy: v1 TCP4 and TCP6 lines") {
        const auto c4 = *sp::SocketAddress::parse("203.0.113.10:51000");
        const auto d4 = *sp::SocketAddress::parse("192.0.2.1:443");
        const auto v1 = proxy_v1(c4, d4);
        CHECK(std::string(v1.begin(), v1.end()) ==
              "PROXY TCP4 203.0.113.10 192.0.2.1 51000 443\r\n");
        const auto c6 = *sp::SocketAddress::parse("[2001:db8::9]:40000");
        const auto mixed = proxy_v1(c6, d4);
        CHECK(std::string(mixed.begin(), mixed.end()) ==
              "PROXY TCP6 2001:db8::9 ::ffff:192.0.2.1 40000 443\r\n");
    }

    TEST_CASE("proxy: v2 binary layout for IPv4 and IPv6") {
        const auto c4 = *sp::SocketAddress::parse("203.0.113.10:51000");
        const auto d4 = *sp::SocketAddress::parse("192.0.2.1:443");
        const auto v2 = proxy_v2(c4, d4);
        REQUIRE(v2.size() == 16 + 12);
        CHECK(v2[12] == 0x21);
        CHECK(v2[13] == 0x11);
        CHECK(v2[14] == 0);
        CHECK(v2[15] == 12);
        CHECK(v2[16] == 203);
        CHECK(v2[19] == 10);
        CHECK(v2[20] == 192);
        CHECK(((v2[24] << 8) | v2[25]) == 51000);
        CHECK(((v2[26] << 8) | v2[27]) == 443);
        const auto c6 = *sp::SocketAddress::parse("[2001:db8::9]:40000");
        const auto d6 = *sp::SocketAddress::parse("[2001:db8::1]:8443");
        const auto v26 = proxy_v2(c6, d6);
        REQUIRE(v26.size() == 16 + 36);
        CHECK(v26[13] == 0x21);
        CHECK(v26[15] == 36);
        CHECK(v26[16] == 0x20);
        CHECK(v26[17] == 0x01);
        CHECK(((v26[48] << 8) | v26[49]) == 40000);
    }
}
