// SPDX-License-Identifier: Apache-2.0
#include "outbound/users.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

using sp::outbound::Users;

TEST_CASE("users: parse and check") {
    auto u = Users::parse("# comment\n\nalice:s3cret\r\nbob:a:b\n", "f");
    REQUIRE(u);
    CHECK(u->size() == 2);
    CHECK(u->check("alice", "s3cret"));
    CHECK(!u->check("alice", "s3cre"));
    CHECK(!u->check("alice", "s3crett"));
    CHECK(u->check("bob", "a:b"));
    CHECK(!u->check("carol", ""));
}

TEST_CASE("users: refused files name the line") {
    struct Row {
        std::string text;  // owned: a c_str() of a temporary would dangle
        int line;
    };
    const std::vector<Row> rows = {
        {"alice\n", 1},
        {"ok:1\n:pw\n", 2},
        {"alice:\n", 1},
        {"a:1\na:2\n", 2},
        {std::string("al\x01ice:pw\n"), 1},
        {"alice:p\x7fw\n", 1},
        {"x:1\n\n# c\nbad\n", 4},
        {std::string(256, 'u') + ":p", 1},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        auto u = Users::parse(r.text, "f");
        REQUIRE(!u);
        CHECK(u.error().line == r.line);
        CHECK(u.error().message.find("p\x7fw") == std::string::npos);
    }
}
