// SPDX-License-Identifier: Apache-2.0
#include "relay/tokens.hpp"

#include <set>

#include <doctest/doctest.h>

using namespace sp::relay;
using sp::control::Token;
using namespace std::chrono_literals;
using Clock = TokenTable::Clock;

namespace {

const Clock::time_point kT0 = Clock::time_point{} + 100h;

Token fresh(unsigned owner = 0) {
    auto t = make_token(owner);
    REQUIRE(t);
    return *t;
}

}  // namespace

TEST_SUITE("relay.tokens") {
    TEST_CASE("tokens: the owner worker travels in the first two bytes") {
        for (unsigned owner : {0U, 1U, 255U, 256U, 1023U}) {
            CHECK(token_owner(fresh(owner)) == owner);
        }
        // The rest is random: 1,000 tokens of one owner are all different.
        std::set<Token> seen;
        for (int i = 0; i < 1000; ++i) {
            seen.insert(fresh(3));
        }
        CHECK(seen.size() == 1000);
    }

    TEST_CASE("tokens: a token is redeemed once, then unknown") {
        TokenTable table(42);
        const Token t = fresh();
        table.add(t, {7, kT0 + 10s});
        CHECK(table.outstanding(7) == 1);
        const auto g = table.redeem(t, kT0);
        REQUIRE(g);
        CHECK(g->agent == 7);
        CHECK_FALSE(table.redeem(t, kT0));
        CHECK(table.outstanding(7) == 0);
        CHECK(table.size() == 0);
    }

    TEST_CASE("tokens: an unknown token, or one differing in any byte, is refused") {
        TokenTable table(1);
        const Token t = fresh();
        table.add(t, {1, kT0 + 10s});
        for (size_t i = 0; i < t.size(); ++i) {
            Token forged = t;
            forged[i] ^= 0x01;
            CHECK_FALSE(table.redeem(forged, kT0));
        }
        CHECK(table.redeem(t, kT0));
    }

    TEST_CASE("tokens: an expired token is refused and used up") {
        TokenTable table(1);
        const Token t = fresh();
        table.add(t, {1, kT0});
        CHECK_FALSE(table.redeem(t, kT0 + 1ms));
        CHECK(table.size() == 0);
        CHECK(table.outstanding(1) == 0);
    }

    TEST_CASE("tokens: expire() drops only what is past its time, per agent") {
        TokenTable table(9);
        for (int i = 0; i < 10; ++i) {
            table.add(fresh(), {static_cast<uint64_t>(i % 2), kT0 + std::chrono::seconds(i)});
        }
        std::vector<uint64_t> expired;
        table.expire(kT0 + 4500ms, [&](uint64_t agent) { expired.push_back(agent); });
        CHECK(expired.size() == 5);
        CHECK(table.size() == 5);
        CHECK(table.outstanding(0) == 2);  // 6 and 8 left
        CHECK(table.outstanding(1) == 3);  // 5, 7 and 9 left
    }

    TEST_CASE("tokens: voiding an agent leaves the others' tokens") {
        TokenTable table(5);
        const Token a = fresh();
        const Token b = fresh();
        table.add(a, {1, kT0 + 10s});
        table.add(b, {2, kT0 + 10s});
        CHECK(table.void_agent(1) == 1);
        CHECK_FALSE(table.redeem(a, kT0));
        CHECK(table.redeem(b, kT0));
    }
}
