// SPDX-License-Identifier: Apache-2.0
#include "io/timer_list.hpp"

#include <memory>
#include <vector>

#include <doctest/doctest.h>

#include "io/worker.hpp"

using namespace sp::io;
using namespace std::chrono_literals;

namespace {

// run_due passes a Worker through to callbacks; these never touch it, and
// its thread never starts.
Worker& no_worker() {
    static std::unique_ptr<Worker> w = [] {
        auto r = Worker::create(WorkerOptions{});
        REQUIRE(r);
        return std::move(*r);
    }();
    return *w;
}

}  // namespace

TEST_SUITE("io.timer_list") {
    TEST_CASE("timer_list: due timers run once in deadline order and the rest wait") {
        TimerList t;
        const auto t0 = TimerList::Clock::time_point{} + 1h;
        std::vector<int> ran;
        (void)t.add(t0 + 30ms, [&](Worker&) { ran.push_back(3); });
        (void)t.add(t0 + 10ms, [&](Worker&) { ran.push_back(1); });
        (void)t.add(t0 + 20ms, [&](Worker&) { ran.push_back(2); });
        CHECK(t.next() == t0 + 10ms);
        CHECK(t.run_due(t0 + 20ms, no_worker()) == 2);
        CHECK(ran == std::vector<int>{1, 2});
        CHECK(t.next() == t0 + 30ms);
        CHECK(t.run_due(t0 + 20ms, no_worker()) == 0);
        CHECK(t.run_due(t0 + 1h, no_worker()) == 1);
        CHECK(ran == std::vector<int>{1, 2, 3});
        CHECK(t.size() == 0);
        CHECK_FALSE(t.next());
    }

    TEST_CASE("timer_list: a cancelled timer never runs and is freed at once") {
        TimerList t;
        const auto t0 = TimerList::Clock::time_point{} + 1h;
        int ran = 0;
        const uint64_t id = t.add(t0 + 24h, [&](Worker&) { ++ran; });
        CHECK(id != 0);
        CHECK(t.size() == 1);
        CHECK(t.cancel(id));
        CHECK(t.size() == 0);
        CHECK_FALSE(t.cancel(id));
        CHECK(t.run_due(t0 + 48h, no_worker()) == 0);
        CHECK(ran == 0);
    }

    TEST_CASE("timer_list: a callback may cancel a due timer and re-add itself without looping") {
        TimerList t;
        const auto t0 = TimerList::Clock::time_point{} + 1h;
        int first = 0;
        int second = 0;
        uint64_t victim = 0;
        (void)t.add(t0, [&](Worker& w) {
            ++first;
            CHECK(t.cancel(victim));
            (void)t.add(t0, [&](Worker&) { ++first; });  // due, but waits for the next call
            (void)w;
        });
        victim = t.add(t0 + 1ms, [&](Worker&) { ++second; });
        CHECK(t.run_due(t0 + 1s, no_worker()) == 1);
        CHECK(first == 1);
        CHECK(second == 0);
        CHECK(t.run_due(t0 + 1s, no_worker()) == 1);
        CHECK(first == 2);
    }
}
