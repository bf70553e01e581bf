// SPDX-License-Identifier: Apache-2.0
#include "base/poller.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

using namespace std::chrono_literals;

TEST_SUITE("base.poller") {
    TEST_CASE("poller: readiness callback runs and may remove itself") {
        auto p = sp::Poller::create();
        REQUIRE(p);
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
        sp::UniqueFd a(sv[0]);
        sp::UniqueFd b(sv[1]);
        int calls = 0;
        REQUIRE(p->add(a.get(), EPOLLIN, [&](uint32_t ev) {
            CHECK((ev & EPOLLIN) != 0);
            ++calls;
            p->remove(a.get());
        }));
        REQUIRE(::write(b.get(), "x", 1) == 1);
        for (int i = 0; i < 10 && calls == 0; ++i) {
            p->run_once(100ms);
        }
        CHECK(calls == 1);
        CHECK_FALSE(p->watching(a.get()));
        p->run_once(10ms);
        CHECK(calls == 1);
    }

    TEST_CASE("poller: timers fire in order and cancelled ones never do") {
        auto p = sp::Poller::create();
        REQUIRE(p);
        std::string order;
        p->add_timer(30ms, [&] { order += 'b'; });
        p->add_timer(1ms, [&] { order += 'a'; });
        const auto dead = p->add_timer(5ms, [&] { order += 'x'; });
        p->cancel_timer(dead);
        const auto until = sp::Poller::Clock::now() + 2s;
        while (order.size() < 2 && sp::Poller::Clock::now() < until) {
            p->run_once(50ms);
        }
        CHECK(order == "ab");
    }
}
