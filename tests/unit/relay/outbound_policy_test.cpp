// SPDX-License-Identifier: Apache-2.0
#include "relay/outbound_policy.hpp"

#include <doctest/doctest.h>

using namespace sp;
using namespace sp::relay;
using control::OutboundStatus;

namespace {

config::RelayConfig cfg_with(const std::string& outbound, const std::string& limits = "") {
    auto c = config::parse_relay_config(
        "[auth]\nkeys = \"k\"\n[limits]\n" + limits + "\n[outbound]\n" + outbound + "\n", "t");
    REQUIRE(c);
    return *c;
}

IpAddress ip(const char* s) {
    return *IpAddress::parse(s);
}

OutboundTarget target(const char* host, uint16_t port) {
    auto t = parse_target(host, port);
    REQUIRE(t);
    return *t;
}

}  // namespace

TEST_SUITE("relay.outbound_policy") {
    TEST_CASE("outbound: targets are names or literals, anything else is refused") {
        CHECK(target("partner.example.com", 443).destination() == "partner.example.com:443");
        CHECK_FALSE(target("partner.example.com", 443).ip);
        CHECK(target("192.0.2.1", 22).ip == ip("192.0.2.1"));
        CHECK(target("2001:db8::1", 22).destination() == "[2001:db8::1]:22");
        CHECK(target("[2001:db8::1]", 22).ip == ip("2001:db8::1"));
        CHECK(target("::ffff:192.0.2.1", 22).ip == ip("192.0.2.1"));
        CHECK_FALSE(parse_target("", 22));
        CHECK_FALSE(parse_target("a.example", 0));
        CHECK_FALSE(parse_target("bad host", 22));
        CHECK_FALSE(parse_target("evil\nname", 22));
        CHECK_FALSE(parse_target("[192.0.2.1]", 22));
        CHECK_FALSE(parse_target(std::string(254, 'a'), 22));
    }

    TEST_CASE("outbound: precheck order is disabled, then the allow list, then the limits") {
        OutboundCounts counts;
        const auto none = cfg_with("", "max_outbound_sessions = 1");
        CHECK(outbound_precheck(none, target("192.0.2.1", 22), "a", counts) ==
              OutboundStatus::Disabled);
        const auto c = cfg_with("allow = [\"partner.example.com:443\", \"198.51.100.0/24:22\"]",
                                "max_outbound_sessions = 1");
        // A name no name rule names, on a port no CIDR rule covers: no DNS.
        CHECK(outbound_precheck(c, target("other.example.com", 443), "a", counts) ==
              OutboundStatus::Denied);
        CHECK(outbound_precheck(c, target("partner.example.com", 80), "a", counts) ==
              OutboundStatus::Denied);
        CHECK(outbound_precheck(c, target("192.0.2.1", 22), "a", counts) == OutboundStatus::Denied);
        CHECK(counts.total() == 0);  // refusals take no slot
        // A name a CIDR rule may admit once resolved goes on to DNS.
        CHECK(outbound_precheck(c, target("sftp.example.net", 22), "a", counts) ==
              OutboundStatus::Ok);
        CHECK(counts.total() == 1);
        // The limit comes after the allow list: a denied request says denied.
        CHECK(outbound_precheck(c, target("192.0.2.1", 22), "b", counts) == OutboundStatus::Denied);
        CHECK(outbound_precheck(c, target("PARTNER.example.com", 443), "b", counts) ==
              OutboundStatus::Limit);
        counts.release("a");
        CHECK(outbound_precheck(c, target("198.51.100.9", 22), "b", counts) == OutboundStatus::Ok);
    }

    TEST_CASE("outbound: limits count relay-wide and per agent name; 0 is unlimited") {
        OutboundCounts counts;
        const OutboundCounts::Limits per2{0, 2};
        CHECK(counts.acquire("a", per2));
        CHECK(counts.acquire("a", per2));
        CHECK_FALSE(counts.acquire("a", per2));
        CHECK(counts.acquire("b", per2));
        CHECK(counts.total() == 3);
        CHECK(counts.of("a") == 2);
        CHECK_FALSE(counts.acquire("c", {3, 0}));
        counts.release("a");
        CHECK(counts.acquire("c", {3, 0}));
        counts.release("zzz");  // never acquired: ignored
        CHECK(counts.total() == 3);
        counts.release("a");
        counts.release("b");
        counts.release("c");
        CHECK(counts.total() == 0);
        CHECK(counts.of("a") == 0);
        for (int i = 0; i < 1000; ++i) {
            REQUIRE(counts.acquire("x", {0, 0}));
        }
    }

    TEST_CASE("outbound: every resolved address is checked; a name cannot rebind elsewhere") {
        const auto c = cfg_with("allow = [\"partner.example.com:443\", \"127.0.0.5/32:8080\"]");
        // A name rule admits what the name resolves to.
        auto a = allowed_addresses(c, target("partner.example.com", 443),
                                   {ip("203.0.113.1"), ip("10.0.0.1"), ip("203.0.113.1")});
        REQUIRE(a.size() == 2);
        CHECK(a[0].to_string() == "203.0.113.1:443");
        CHECK(a[1].to_string() == "10.0.0.1:443");
        // Through a CIDR rule only the addresses inside it remain, in order.
        a = allowed_addresses(c, target("localhost", 8080),
                              {ip("127.0.0.1"), ip("::1"), ip("127.0.0.5")});
        REQUIRE(a.size() == 1);
        CHECK(a[0].to_string() == "127.0.0.5:8080");
        CHECK(
            allowed_addresses(c, target("localhost", 8080), {ip("127.0.0.1"), ip("::1")}).empty());
        // A literal is itself the only candidate.
        CHECK(allowed_addresses(c, target("127.0.0.5", 8080), {ip("127.0.0.1")}).size() == 1);
        CHECK(allowed_addresses(c, target("127.0.0.6", 8080), {}).empty());
    }

    TEST_CASE("outbound: REASON words of outbound-rejected") {
        CHECK(rejected_reason(OutboundStatus::Denied) == "not-allowed");
        CHECK(rejected_reason(OutboundStatus::ResolveFailed) == "resolve-failed");
        CHECK(rejected_reason(OutboundStatus::ConnectFailed) == "connect-failed");
        CHECK(rejected_reason(OutboundStatus::Timeout) == "timeout");
        CHECK(rejected_reason(OutboundStatus::Limit) == "limit");
        CHECK(rejected_reason(OutboundStatus::Disabled) == "disabled");
    }
}
