// SPDX-License-Identifier: Apache-2.0
#include "agent/health_state.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace sp::agent;

namespace {

// Events, one letter each: o(k), f(ailed check), p(assive failure).
HealthEvent event_of(char c) {
    return c == 'o'   ? HealthEvent::CheckOk
           : c == 'f' ? HealthEvent::CheckFailed
                      : HealthEvent::PassiveFailure;
}

// Actions, one letter each: '.' none, D(own), U(p).
char letter(HealthAction a) {
    return a == HealthAction::BecameDown ? 'D' : a == HealthAction::BecameUp ? 'U' : '.';
}

struct Row {
    const char* what;
    uint32_t rise;
    uint32_t fall;
    const char* events;
    const char* actions;
    bool up_after;
};

}  // namespace

TEST_SUITE("agent.health_state") {
    TEST_CASE("health_state: rise and fall count consecutive results, HAProxy style") {
        const std::vector<Row> rows = {
            {"starts up: successes change nothing", 2, 3, "ooo", "...", true},
            {"fall failures in a row take it down", 2, 3, "fff", "..D", false},
            {"a success restarts the fall count", 2, 3, "ffoff", ".....", true},
            {"down stays down on more failures", 2, 3, "ffffff", "..D...", false},
            {"rise successes in a row bring it up", 2, 3, "fffoo", "..D.U", true},
            {"a failure restarts the rise count", 2, 3, "fffofoo", "..D...U", true},
            {"fall 1: the first failure takes it down", 1, 1, "fof", "DUD", false},
            {"rise 1: the first success brings it up", 1, 2, "ffo", ".DU", true},
            {"down and up again, twice", 2, 2, "ffooffoo", ".D.U.D.U", true},
            {"a passive failure counts as a failed check", 2, 3, "pff", "..D", false},
            {"passive failures alone reach fall", 2, 3, "ppp", "..D", false},
            {"a passive failure restarts a down backend's rise", 2, 3, "fffopoo", "..D...U", true},
            {"a success after passive failures restarts the count", 2, 3, "ppoff", ".....", true},
        };
        for (const auto& r : rows) {
            CAPTURE(r.what);
            HealthState s(r.rise, r.fall);
            std::string got;
            for (const char* e = r.events; *e != 0; ++e) {
                got += letter(s.on(event_of(*e)));
            }
            CHECK(got == r.actions);
            CHECK(s.up() == r.up_after);
        }
    }

    TEST_CASE("health_state: streak says how many checks made the transition") {
        HealthState s(2, 3);
        CHECK(s.streak() == 0);
        CHECK(s.on(HealthEvent::CheckFailed) == HealthAction::None);
        CHECK(s.streak() == 1);
        CHECK(s.on(HealthEvent::CheckFailed) == HealthAction::None);
        CHECK(s.on(HealthEvent::CheckFailed) == HealthAction::BecameDown);
        CHECK(s.streak() == 3);
        CHECK(s.on(HealthEvent::CheckOk) == HealthAction::None);
        CHECK(s.streak() == 1);
        CHECK(s.on(HealthEvent::CheckOk) == HealthAction::BecameUp);
        CHECK(s.streak() == 2);
        CHECK(s.on(HealthEvent::CheckOk) == HealthAction::None);
        CHECK(s.streak() == 0);
    }

    TEST_CASE("health_state: rise and fall of 0 behave as 1") {
        HealthState s(0, 0);
        CHECK(s.on(HealthEvent::CheckFailed) == HealthAction::BecameDown);
        CHECK(s.on(HealthEvent::CheckOk) == HealthAction::BecameUp);
    }

    TEST_CASE("health_state: names") {
        CHECK(to_string(HealthEvent::PassiveFailure) == "passive-failure");
        CHECK(to_string(HealthAction::BecameDown) == "became-down");
        CHECK(to_string(HealthAction::BecameUp) == "became-up");
    }
}
