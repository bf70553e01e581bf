// SPDX-License-Identifier: Apache-2.0
// The affinity rules as a table: for a client's memory (none, pinned with N
// sessions open, pinned idle, expired) and the candidates' states, what
// acquire decides.
#include "balance/sticky_table.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "balance/rendezvous.hpp"

using sp::balance::Candidate;
using sp::balance::Choice;
using sp::balance::StickyTable;
using namespace std::chrono_literals;
using S = Candidate::State;
using V = Choice::Verdict;

namespace {

const auto t0 = StickyTable::Clock::time_point{} + 1000h;
constexpr auto kHold = 300s;
const std::string kClient = "203.0.113.9";

std::vector<Candidate> cands(S a, S b) {
    return {{"srv-a", a}, {"srv-b", b}};
}

// The candidate rendezvous prefers for kClient, and the other one.
std::string preferred() {
    const std::vector<std::string> n{"srv-a", "srv-b"};
    return n[sp::balance::rendezvous_pick(kClient, n, [](size_t) { return true; })];
}
std::string other() {
    return preferred() == "srv-a" ? "srv-b" : "srv-a";
}
S state_of(const std::string& name, S pinned_state, S other_state, const std::string& pinned) {
    return name == pinned ? pinned_state : other_state;
}

// A table where kClient is pinned on `pinned` with `open` sessions open.
StickyTable pinned_on(const std::string& pinned, uint32_t open) {
    StickyTable t(16);
    // Pin by offering only `pinned` as up.
    const auto c = cands(state_of("srv-a", S::Up, S::Excluded, pinned),
                         state_of("srv-b", S::Up, S::Excluded, pinned));
    const auto first = t.acquire(kClient, c, kHold, t0);
    REQUIRE(first.ok());
    for (uint32_t i = 1; i < open; ++i) {
        REQUIRE(t.acquire(kClient, c, kHold, t0).ok());
    }
    if (open == 0) {
        t.release(kClient, t0);
    }
    return t;
}

}  // namespace

TEST_SUITE("balance.sticky") {
    TEST_CASE("rules table") {
        struct Row {
            const char* what;
            int open;        // -1: no memory for the client
            S pinned_state;  // state of the client's pinned target (other())
            S other_state;   // state of preferred()
            V verdict;
            bool on_pinned;  // chose the pinned target (else preferred())
        };
        // The client is pinned on other() (not its rendezvous choice) so that
        // "kept" and "moved" are told apart.
        const Row rows[] = {
            {"fresh client goes to the rendezvous choice", -1, S::Up, S::Up, V::Fresh, false},
            {"fresh client skips a down target", -1, S::Up, S::Down, V::Fresh, true},
            {"fresh client, all down: best of the down", -1, S::Down, S::Down, V::Fresh, false},
            {"fresh client, all excluded: exhausted", -1, S::Excluded, S::Excluded, V::Exhausted,
             false},
            {"pinned idle, up: kept", 0, S::Up, S::Up, V::Kept, true},
            {"pinned open, up: kept", 2, S::Up, S::Up, V::Kept, true},
            {"pinned open, looks down: kept (sessions prove it)", 1, S::Down, S::Up, V::Kept, true},
            {"pinned idle, down: moves", 0, S::Down, S::Up, V::Moved, false},
            {"pinned open, refused this session: refused, never elsewhere", 1, S::Excluded, S::Up,
             V::Refused, false},
            {"pinned idle, refused this session: moves", 0, S::Excluded, S::Up, V::Moved, false},
            {"pinned idle, everything down: best of the down", 0, S::Excluded, S::Down, V::Moved,
             false},
        };
        for (const Row& r : rows) {
            CAPTURE(r.what);
            StickyTable t = r.open < 0 ? StickyTable(16) : pinned_on(other(), r.open);
            const auto c = cands(state_of("srv-a", r.pinned_state, r.other_state, other()),
                                 state_of("srv-b", r.pinned_state, r.other_state, other()));
            const Choice ch = t.acquire(kClient, c, kHold, t0 + 1s);
            CHECK(ch.verdict == r.verdict);
            if (ch.ok()) {
                CHECK(c[ch.index].name == (r.on_pinned ? other() : preferred()));
                CHECK(t.target(kClient) == c[ch.index].name);
            }
        }
    }

    TEST_CASE("OpenClients::Move: a client with sessions open moves off an unusable target") {
        for (const S pinned_state : {S::Excluded, S::Down}) {
            StickyTable t = pinned_on(other(), 2);
            const auto c = cands(state_of("srv-a", pinned_state, S::Up, other()),
                                 state_of("srv-b", pinned_state, S::Up, other()));
            const Choice ch = t.acquire(kClient, c, kHold, t0, StickyTable::OpenClients::Move);
            if (pinned_state == S::Down) {
                CHECK(ch.verdict == V::Kept);  // open sessions still prove it
                continue;
            }
            CHECK(ch.verdict == V::Moved);
            CHECK(c[ch.index].name == preferred());
            CHECK(t.open(kClient) == 3);  // the old two still end and release
        }
        // Gone from the candidates entirely (an agent that disconnected).
        StickyTable t = pinned_on("srv-a", 1);
        const std::vector<Candidate> c{{"srv-c", S::Up}};
        CHECK(t.acquire(kClient, c, kHold, t0, StickyTable::OpenClients::Move).verdict == V::Moved);
    }

    TEST_CASE("owner_shard: stable and in range") {
        CHECK(sp::balance::owner_shard(kClient, 1) == 0);
        for (unsigned n = 2; n < 8; ++n) {
            CHECK(sp::balance::owner_shard(kClient, n) < n);
            CHECK(sp::balance::owner_shard(kClient, n) == sp::balance::owner_shard(kClient, n));
        }
    }

    TEST_CASE("a target that is not a candidate of this service") {
        StickyTable t = pinned_on("srv-a", 1);
        const std::vector<Candidate> c{{"srv-c", S::Up}};
        CHECK(t.acquire(kClient, c, kHold, t0).verdict == V::Refused);
        t.release(kClient, t0);
        CHECK(t.acquire(kClient, c, kHold, t0).verdict == V::Moved);
        CHECK(t.target(kClient) == "srv-c");
    }

    TEST_CASE("open sessions are counted; the hold starts when the last ends") {
        StickyTable t = pinned_on(other(), 2);
        CHECK(t.open(kClient) == 2);
        t.release(kClient, t0 + 10s);
        t.release(kClient, t0 + 20s);
        CHECK(t.open(kClient) == 0);
        t.release(kClient, t0 + 20s);  // extra release: harmless
        const auto c = cands(S::Up, S::Up);
        CHECK(t.acquire(kClient, c, kHold, t0 + 20s + kHold - 1s).verdict == V::Kept);
        t.release(kClient, t0 + 20s + kHold);
        t.expire(t0 + 20s + kHold + kHold - 1s);
        CHECK(t.size() == 1);
        const Choice late = t.acquire(kClient, c, kHold, t0 + 20s + kHold + kHold);
        CHECK(late.verdict == V::Fresh);  // expired: back to the rendezvous choice
        CHECK(c[late.index].name == preferred());
    }

    TEST_CASE("an open entry never expires") {
        StickyTable t = pinned_on(other(), 1);
        t.expire(t0 + 100 * kHold);
        CHECK(t.size() == 1);
        CHECK(t.acquire(kClient, cands(S::Up, S::Up), kHold, t0 + 100 * kHold).verdict == V::Kept);
    }

    TEST_CASE("bounded: a full table sweeps expired entries, then places without memory") {
        StickyTable t(4);
        const auto c = cands(S::Up, S::Up);
        for (int i = 0; i < 4; ++i) {
            REQUIRE(t.acquire("10.0.0." + std::to_string(i), c, 10s, t0).ok());
        }
        CHECK(t.size() == 4);
        // All four open: a fifth client is placed but not remembered.
        CHECK(t.acquire("10.0.0.9", c, 10s, t0).verdict == V::Fresh);
        CHECK(t.size() == 4);
        t.release("10.0.0.9", t0);  // unknown: no-op
        for (int i = 0; i < 4; ++i) {
            t.release("10.0.0." + std::to_string(i), t0);
        }
        // Expired by now: the sweep makes room.
        CHECK(t.acquire("10.0.0.9", c, 10s, t0 + 11s).verdict == V::Fresh);
        CHECK(t.size() == 1);
    }

    TEST_CASE("the hold is the latest session's: a reload that lowers affinity_s applies") {
        StickyTable t(16);
        const auto c = cands(S::Up, S::Up);
        REQUIRE(t.acquire(kClient, c, 300s, t0).ok());
        t.release(kClient, t0);
        REQUIRE(t.acquire(kClient, c, 10s, t0 + 1s).verdict == V::Kept);
        t.release(kClient, t0 + 1s);
        t.expire(t0 + 12s);
        CHECK(t.size() == 0);
    }
}
