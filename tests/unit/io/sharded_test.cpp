// SPDX-License-Identifier: Apache-2.0
#include "io/sharded.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "base/unique_fd.hpp"
#include "io/inbox.hpp"

using namespace sp;
using namespace sp::io;
using namespace std::chrono_literals;

namespace {

struct Counter {
    unsigned index = 0;
    std::thread::id owner;  // the thread that ran the last call
    int calls = 0;
};

// Waits (bounded) until `pred` holds.
template <class Pred>
bool eventually(Pred pred) {
    for (int i = 0; i < 500 && !pred(); ++i) {
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

}  // namespace

TEST_SUITE("io.sharded") {
    TEST_CASE("sharded: each shard runs only on its own worker, in posting order") {
        std::vector<std::unique_ptr<Worker>> owned;
        std::vector<Worker*> workers;
        for (unsigned i = 0; i < 2; ++i) {
            WorkerOptions o;
            o.index = i;
            auto w = Worker::create(o);
            REQUIRE(w);
            workers.push_back(w->get());
            owned.push_back(std::move(*w));
        }
        {
            Sharded<Counter> sharded;
            sharded.start(workers, [](unsigned i) {
                auto c = std::make_unique<Counter>();
                c->index = i;
                return c;
            });
            for (auto& w : owned) {
                w->start();
            }
            CHECK(sharded.size() == 2);
            std::atomic<int> done{0};
            sharded.invoke_on_all([&](Counter& c, Worker& w) {
                c.owner = std::this_thread::get_id();
                CHECK(w.index() == c.index);
                ++c.calls;
                ++done;
            });
            // A move-only capture travels to one shard.
            auto token = std::make_unique<int>(7);
            sharded.invoke_on(1, [t = std::move(token), &done](Counter& c, Worker&) {
                c.calls += *t;
                ++done;
            });
            CHECK(eventually([&] { return done.load() == 3; }));
            for (auto& w : owned) {
                w->request_stop();
                w->join();
            }
            CHECK(sharded.local(0).calls == 1);
            CHECK(sharded.local(1).calls == 8);
            CHECK(sharded.local(0).owner != sharded.local(1).owner);
            CHECK(sharded.local(0).owner != std::this_thread::get_id());
        }
    }

    TEST_CASE("sharded: map_reduce runs each map on its shard's thread and folds at home") {
        std::vector<std::unique_ptr<Worker>> owned;
        std::vector<Worker*> workers;
        for (unsigned i = 0; i < 3; ++i) {
            WorkerOptions o;
            o.index = i;
            auto w = Worker::create(o);
            REQUIRE(w);
            workers.push_back(w->get());
            owned.push_back(std::move(*w));
        }
        auto home = Inbox::create();
        REQUIRE(home);
        {
            Sharded<Counter> sharded;
            sharded.start(workers, [](unsigned i) {
                auto c = std::make_unique<Counter>();
                c->index = i;
                c->calls = static_cast<int>(10 * (i + 1));
                return c;
            });
            for (auto& w : owned) {
                w->start();
            }
            const auto home_thread = std::this_thread::get_id();
            std::vector<std::thread::id> map_threads;
            std::mutex mu;
            std::optional<std::vector<unsigned>> result;
            sharded.map_reduce(
                *home,
                [&](Counter& c, Worker& w) {
                    const std::lock_guard lock(mu);
                    map_threads.push_back(std::this_thread::get_id());
                    CHECK(w.index() == c.index);
                    return std::vector<unsigned>{c.index, static_cast<unsigned>(c.calls)};
                },
                std::vector<unsigned>{},
                [&](std::vector<unsigned> acc, std::vector<unsigned> part) {
                    CHECK(std::this_thread::get_id() == home_thread);
                    acc.insert(acc.end(), part.begin(), part.end());
                    return acc;
                },
                [&](std::vector<unsigned> all) { result = std::move(all); });
            CHECK(eventually([&] {
                home->drain();
                return result.has_value();
            }));
            REQUIRE(result);
            REQUIRE(result->size() == 6);
            unsigned sum = 0;
            for (size_t i = 1; i < result->size(); i += 2) {
                sum += (*result)[i];
            }
            CHECK(sum == 60);
            {
                const std::lock_guard lock(mu);
                CHECK(map_threads.size() == 3);
                for (const auto& t : map_threads) {
                    CHECK(t != home_thread);
                }
            }

            // A shard whose worker has exited still counts once its queued
            // work is destroyed (with the Worker): done runs with what the
            // others gave.
            owned[1]->request_stop();
            owned[1]->join();
            std::optional<int> partial;
            sharded.map_reduce(
                *home, [](Counter&, Worker&) { return 1; }, 0, [](int a, int b) { return a + b; },
                [&](int n) { partial = n; });
            owned[1].reset();
            CHECK(eventually([&] {
                home->drain();
                return partial.has_value();
            }));
            CHECK(partial == 2);
            for (auto& w : owned) {
                if (w) {
                    w->request_stop();
                    w->join();
                }
            }
        }
    }

    TEST_CASE("inbox: posts from other threads run on drain, in order") {
        auto inbox = Inbox::create();
        REQUIRE(inbox);
        std::vector<int> seen;
        std::thread t([&] {
            for (int i = 0; i < 100; ++i) {
                inbox->post([&seen, u = std::make_unique<int>(i)] { seen.push_back(*u); });
            }
        });
        t.join();
        inbox->drain();
        REQUIRE(seen.size() == 100);
        for (int i = 0; i < 100; ++i) {
            CHECK(seen[static_cast<size_t>(i)] == i);
        }
        inbox->drain();  // nothing queued: a no-op
        CHECK(seen.size() == 100);
    }
}
