// SPDX-License-Identifier: Apache-2.0
#include "base/addr.hpp"

#include <doctest/doctest.h>

using sp::Cidr;
using sp::HostPorts;
using sp::IpAddress;
using sp::SocketAddress;

TEST_SUITE("base.addr") {
    TEST_CASE("addr: HOST:PORT parses IPv4, bracketed IPv6 and names") {
        auto a = HostPorts::parse("192.0.2.1:443", false);
        REQUIRE(a);
        CHECK(a->ip);
        CHECK(a->ports.first == 443);
        auto b = HostPorts::parse("[2001:db8::1]:22", false);
        REQUIRE(b);
        CHECK(b->ip->family() == AF_INET6);
        CHECK(b->to_string() == "[2001:db8::1]:22");
        auto c = HostPorts::parse("dmz-gw.example.net:44500", false);
        REQUIRE(c);
        CHECK_FALSE(c->ip);
        CHECK(c->host == "dmz-gw.example.net");
    }

    TEST_CASE("addr: port ranges parse only where allowed") {
        auto r = HostPorts::parse("0.0.0.0:30000-30009", true);
        REQUIRE(r);
        CHECK(r->ports.size() == 10);
        CHECK(r->to_string() == "0.0.0.0:30000-30009");
        CHECK_FALSE(HostPorts::parse("0.0.0.0:30000-30009", false));
        CHECK_FALSE(HostPorts::parse("0.0.0.0:20-10", true));
    }

    TEST_CASE("addr: malformed addresses are rejected with a reason") {
        for (const char* bad :
             {"", ":", "1.2.3.4", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:80x", "::1:80",
              "[::1]", "[::1]80", "[1.2.3.4]:80", "bad host:80", "[::1]:1-", "host:-5"}) {
            CAPTURE(bad);
            auto r = HostPorts::parse(bad, true);
            CHECK_FALSE(r);
            if (!r) {
                CHECK_FALSE(r.error().message.empty());
            }
        }
    }

    TEST_CASE("addr: SocketAddress refuses names and round-trips through sockaddr") {
        CHECK_FALSE(SocketAddress::parse("localhost:80"));
        for (const char* text : {"127.0.0.1:9", "[::1]:65535"}) {
            auto a = SocketAddress::parse(text);
            REQUIRE(a);
            sockaddr_storage ss{};
            const socklen_t len = a->to_sockaddr(ss);
            auto back = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
            REQUIRE(back);
            CHECK(*back == *a);
            CHECK(back->to_string() == text);
        }
    }

    TEST_CASE("addr: CIDR matching for v4, v6 and v4-mapped peers") {
        auto net = Cidr::parse("10.1.0.0/16");
        REQUIRE(net);
        CHECK(net->contains(*IpAddress::parse("10.1.200.3")));
        CHECK_FALSE(net->contains(*IpAddress::parse("10.2.0.1")));
        CHECK(net->contains(*IpAddress::parse("::ffff:10.1.0.9")));
        auto v6 = Cidr::parse("2001:db8::/32");
        REQUIRE(v6);
        CHECK(v6->contains(*IpAddress::parse("2001:db8:ffff::1")));
        CHECK_FALSE(v6->contains(*IpAddress::parse("2001:db9::1")));
        CHECK_FALSE(v6->contains(*IpAddress::parse("10.1.0.1")));
        auto odd = Cidr::parse("192.168.1.128/25");
        REQUIRE(odd);
        CHECK(odd->contains(*IpAddress::parse("192.168.1.200")));
        CHECK_FALSE(odd->contains(*IpAddress::parse("192.168.1.127")));
        auto all = Cidr::parse("0.0.0.0/0");
        REQUIRE(all);
        CHECK(all->contains(*IpAddress::parse("203.0.113.9")));
        auto host = Cidr::parse("::1");
        REQUIRE(host);
        CHECK(host->prefix() == 128);
    }

    TEST_CASE("addr: CIDR with host bits set suggests the network") {
        auto bad = Cidr::parse("10.0.0.1/8");
        REQUIRE_FALSE(bad);
        CHECK(bad.error().message.find("10.0.0.0/8") != std::string::npos);
        CHECK_FALSE(Cidr::parse("10.0.0.0/33"));
        CHECK_FALSE(Cidr::parse("10.0.0.0/"));
        CHECK_FALSE(Cidr::parse("nonsense/8"));
    }
}
