// SPDX-License-Identifier: Apache-2.0
#include "base/unique_function.hpp"

#include <memory>
#include <vector>

#include <doctest/doctest.h>

using sp::UniqueFunction;

TEST_SUITE("base.unique_function") {
    TEST_CASE("unique function: owns a move-only capture and calls it") {
        auto p = std::make_unique<int>(41);
        UniqueFunction<int(int)> f = [p = std::move(p)](int d) { return *p + d; };
        CHECK(static_cast<bool>(f));
        CHECK(f(1) == 42);
        UniqueFunction<int(int)> g = std::move(f);
        CHECK(g(2) == 43);
    }

    TEST_CASE("unique function: empty until assigned; destroying it destroys the capture") {
        UniqueFunction<void()> f;
        CHECK_FALSE(static_cast<bool>(f));
        auto owned = std::make_shared<int>(1);
        std::weak_ptr<int> watch = owned;
        f = [o = std::move(owned)] { (void)o; };
        CHECK_FALSE(watch.expired());
        f = nullptr;
        CHECK(watch.expired());
    }

    TEST_CASE("unique function: stored in a vector and moved around") {
        std::vector<UniqueFunction<int()>> v;
        for (int i = 0; i < 10; ++i) {
            v.emplace_back([u = std::make_unique<int>(i)] { return *u; });
        }
        int sum = 0;
        for (auto& fn : v) {
            sum += fn();
        }
        CHECK(sum == 45);
    }
}
