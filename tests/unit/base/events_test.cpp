// SPDX-License-Identifier: Apache-2.0
#include "base/events.hpp"

#include <set>
#include <string_view>

#include <doctest/doctest.h>

using namespace sp::log;

TEST_SUITE("base.events") {
    TEST_CASE("events: one table row per Ev, in enum order, names unique and well formed") {
        std::set<std::string_view> names;
        for (size_t i = 0; i < kEvents.size(); ++i) {
            CHECK(static_cast<size_t>(kEvents[i].id) == i);
            const auto n = kEvents[i].name;
            CHECK(names.insert(n).second);
            CHECK_FALSE(n.empty());
            for (const char c : n) {
                CHECK(((c >= 'a' && c <= 'z') || c == '-'));
            }
        }
        CHECK(to_string(Ev::SessionClose) == "session-close");
        CHECK(spec(Ev::ReloadFailed).level == Level::Error);
    }
}
