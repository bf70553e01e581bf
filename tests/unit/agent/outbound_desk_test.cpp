// SPDX-License-Identifier: Apache-2.0
// The forward proxy's book on the control thread: which relay a request
// goes to, which answers reach a worker, and what a dropped link fails.
#include "agent/outbound_desk.hpp"

#include <vector>

#include <doctest/doctest.h>

using sp::agent::LinkId;
using sp::agent::OutboundDesk;
using sp::agent::OutboundTicket;

namespace {

const LinkId kA{1};
const LinkId kB{2};

}  // namespace

TEST_CASE("outbound desk: no Ready link, no choice") {
    OutboundDesk d;
    CHECK_FALSE(d.choose({}));
}

TEST_CASE("outbound desk: the least loaded Ready link, ties to the first") {
    OutboundDesk d;
    CHECK(d.choose({kA, kB}) == kA);
    const auto r1 = d.open({0, 1}, kA);
    REQUIRE(r1);
    CHECK(d.choose({kA, kB}) == kB);  // A has one pending
    const auto r2 = d.open({1, 1}, kB);
    REQUIRE(r2);
    CHECK(*r1 != *r2);
    CHECK(d.choose({kA, kB}) == kA);
    // A's request accepted: the session keeps counting until it ends.
    CHECK(d.answer(kA, *r1, true) == OutboundTicket{0, 1});
    CHECK(d.load(kA) == 1);
    // B's refused: no load left on B.
    CHECK(d.answer(kB, *r2, false) == OutboundTicket{1, 1});
    CHECK(d.load(kB) == 0);
    CHECK(d.choose({kA, kB}) == kB);
    d.ended(kA);
    CHECK(d.load(kA) == 0);
    d.ended(kA);  // an extra end changes nothing
    CHECK(d.load(kA) == 0);
    CHECK(d.choose({kB}) == kB);  // only Ready links are candidates
}

TEST_CASE("outbound desk: unknown, repeated and misrouted answers are dropped") {
    OutboundDesk d;
    const auto r = d.open({0, 7}, kA);
    REQUIRE(r);
    CHECK_FALSE(d.answer(kA, *r + 1, true));  // never asked
    CHECK_FALSE(d.answer(kB, *r, true));      // asked of another relay
    CHECK(d.answer(kA, *r, true));
    CHECK_FALSE(d.answer(kA, *r, true));  // answered twice
    CHECK(d.pending() == 0);
}

TEST_CASE("outbound desk: a cancelled request's answer reaches nobody and frees the load") {
    OutboundDesk d;
    const auto r = d.open({0, 7}, kA);
    REQUIRE(r);
    d.cancel({0, 7});
    CHECK(d.load(kA) == 1);  // until the relay answers
    CHECK_FALSE(d.answer(kA, *r, true));
    CHECK(d.load(kA) == 0);
}

TEST_CASE("outbound desk: a link going down fails its open requests only") {
    OutboundDesk d;
    const auto a1 = d.open({0, 1}, kA);
    const auto a2 = d.open({1, 2}, kA);
    const auto b1 = d.open({0, 3}, kB);
    REQUIRE((a1 && a2 && b1));
    d.cancel({1, 2});
    const auto failed = d.link_down(kA);
    CHECK(failed == std::vector<OutboundTicket>{{0, 1}});
    CHECK(d.load(kA) == 0);
    CHECK(d.pending() == 1);
    CHECK_FALSE(d.answer(kA, *a1, true));  // late answer after the drop
    CHECK(d.answer(kB, *b1, true) == OutboundTicket{0, 3});
}

TEST_CASE("outbound desk: bounded") {
    OutboundDesk d;
    for (size_t i = 0; i < OutboundDesk::kMaxPending; ++i) {
        REQUIRE(d.open({0, i}, kA));
    }
    CHECK_FALSE(d.open({0, OutboundDesk::kMaxPending}, kA));
}
