// SPDX-License-Identifier: Apache-2.0
#include "io/session_table.hpp"

#include <string>

#include <doctest/doctest.h>

using namespace sp::io;

TEST_SUITE("io.session_table") {
    TEST_CASE("session_table: stale id never reaches a reused slot when the slot is recycled") {
        SessionTable<std::string> t;
        SessionId a = t.emplace("first");
        REQUIRE(t.get(a) != nullptr);
        CHECK(*t.get(a) == "first");
        CHECK(t.erase(a));
        CHECK(t.get(a) == nullptr);
        CHECK_FALSE(t.erase(a));

        SessionId b = t.emplace("second");
        CHECK(b.slot == a.slot);  // the free list reuses the slot
        CHECK(b.gen != a.gen);    // with a new generation
        CHECK(t.get(a) == nullptr);
        REQUIRE(t.get(b) != nullptr);
        CHECK(*t.get(b) == "second");
        CHECK(t.size() == 1);
    }

    TEST_CASE("session_table: references stay valid when the table grows") {
        SessionTable<int> t;
        SessionId first = t.emplace(42);
        int* p = t.get(first);
        for (int i = 0; i < 10000; ++i) {
            (void)t.emplace(i);
        }
        CHECK(p == t.get(first));
        CHECK(*p == 42);
        CHECK(t.size() == 10001);
        CHECK(t.ids().size() == 10001);
    }

    TEST_CASE("session_table: invalid and out-of-range ids are rejected") {
        SessionTable<int> t;
        CHECK(t.get(SessionId{}) == nullptr);
        CHECK(t.get(SessionId{5, 0}) == nullptr);
        CHECK_FALSE(SessionId{}.valid());
    }
}
