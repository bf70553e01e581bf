// SPDX-License-Identifier: Apache-2.0
#include "io/sharded.hpp"

#include <atomic>
#include <chrono>
#include <memory>
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
