// SPDX-License-Identifier: Apache-2.0
#include "config/keys.hpp"

#include <doctest/doctest.h>

TEST_SUITE("config.keys") {
    TEST_CASE("keys: placeholder") {
        CHECK(true);
    }
}
