// SPDX-License-Identifier: Apache-2.0
#include "relay/pool.hpp"

#include <doctest/doctest.h>

#include "control/frame.hpp"
#include "relay/preauth.hpp"

using namespace sp::relay;

TEST_SUITE("relay.pool") {
    TEST_CASE("pool: starts at its cap, as the whole pool is issued after HELLO") {
        PoolPolicy p(4);
        CHECK(p.target() == 4);
        CHECK(p.want(4, 0, 0) == 0);
        CHECK(p.want(0, 4, 0) == 0);  // tokens out count as channels on the way
    }

    TEST_CASE("pool: a quiet agent decays to the floor; idle channels above it are excess") {
        PoolPolicy p(8);
        for (int i = 0; i < 30; ++i) {
            p.tick();
        }
        CHECK(p.target() == PoolPolicy::kFloor);
        CHECK(p.excess(8) == 8 - PoolPolicy::kFloor);
        CHECK(p.excess(1) == 0);
    }

    TEST_CASE("pool: demand follows the pairings of the last second, up to the cap") {
        PoolPolicy p(16);
        for (int i = 0; i < 40; ++i) {
            p.tick();
        }
        for (int i = 0; i < 5; ++i) {
            p.paired();
        }
        p.tick();
        CHECK(p.target() == 5);
        for (int i = 0; i < 100; ++i) {
            p.paired();
        }
        p.tick();
        CHECK(p.target() == 16);
    }

    TEST_CASE("pool: refills in batches below the low-water mark, not one per session") {
        PoolPolicy p(8);
        CHECK(p.want(7, 0, 0) == 0);
        CHECK(p.want(5, 0, 0) == 0);
        CHECK(p.want(4, 0, 0) == 4);  // half the target: refill to the target at once
        CHECK(p.want(1, 2, 0) == 5);
    }

    TEST_CASE("pool: waiting clients are asked for at once, in one batch") {
        PoolPolicy p(0);  // pool = 0: channels only on demand
        CHECK(p.target() == 0);
        CHECK(p.want(0, 0, 0) == 0);
        CHECK(p.want(0, 0, 1) == 1);
        CHECK(p.want(0, 1, 3) == 2);
        CHECK(p.want(0, 0, 5000) == sp::control::kMaxTokens);
        CHECK(p.want(0, PoolPolicy::kMaxOutstanding, 5000) == 0);
    }

    TEST_CASE("pool: while channels die, it asks at most once per tick") {
        PoolPolicy p(2);
        p.dead();
        CHECK(p.want(0, 0, 1) == 3);
        p.asked();
        CHECK(p.want(0, 0, 1) == 0);
        p.tick();  // channels died last tick: still throttled, one more request allowed
        CHECK(p.want(0, 0, 1) == 3);
        p.asked();
        CHECK(p.want(0, 0, 1) == 0);
        p.tick();
        p.tick();  // a tick without deaths lifts it
        p.asked();
        CHECK(p.want(0, 0, 1) > 0);
    }
}

TEST_SUITE("relay.preauth") {
    TEST_CASE("preauth: one address holds at most its share; others still get in") {
        PreAuth p(100, 10);
        const auto a = *sp::IpAddress::parse("192.0.2.1");
        const auto b = *sp::IpAddress::parse("192.0.2.2");
        for (int i = 0; i < 10; ++i) {
            CHECK(p.enter(a));
        }
        CHECK_FALSE(p.enter(a));
        CHECK(p.enter(b));
        CHECK(p.of(a) == 10);
        p.leave(a);
        CHECK(p.enter(a));
        CHECK(p.size() == 11);
    }

    TEST_CASE("preauth: the total cap holds across addresses") {
        PreAuth p(3, 10);
        CHECK(p.enter(*sp::IpAddress::parse("192.0.2.1")));
        CHECK(p.enter(*sp::IpAddress::parse("192.0.2.2")));
        CHECK(p.enter(*sp::IpAddress::parse("192.0.2.3")));
        CHECK_FALSE(p.enter(*sp::IpAddress::parse("192.0.2.4")));
    }

    TEST_CASE("preauth: an IPv6 /64 is one address; a mapped IPv4 is the IPv4") {
        PreAuth p(100, 2);
        CHECK(p.enter(*sp::IpAddress::parse("2001:db8::1")));
        CHECK(p.enter(*sp::IpAddress::parse("2001:db8::ffff:2")));
        CHECK_FALSE(p.enter(*sp::IpAddress::parse("2001:db8:0:0:1::3")));
        CHECK(p.enter(*sp::IpAddress::parse("2001:db8:0:1::1")));
        CHECK(p.enter(*sp::IpAddress::parse("198.51.100.7")));
        CHECK(p.enter(*sp::IpAddress::parse("::ffff:198.51.100.7")));
        CHECK_FALSE(p.enter(*sp::IpAddress::parse("198.51.100.7")));
    }
}
