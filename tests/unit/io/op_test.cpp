// SPDX-License-Identifier: Apache-2.0
#include "io/op.hpp"

#include <doctest/doctest.h>

using namespace sp::io;

TEST_SUITE("io.op") {
    TEST_CASE("op: tag round-trips through user_data when all fields are at their limits") {
        const Tag t{0xfffffffeU, 0xabcd, Op::PollOut, 1};
        const Tag back = decode(encode(t));
        CHECK(back.slot == t.slot);
        CHECK(back.gen == t.gen);
        CHECK(back.op == Op::PollOut);
        CHECK(back.dir == 1);
        static_assert(decode(encode(Tag{7, 9, Op::Accept, 0})).gen == 9);
    }
}
