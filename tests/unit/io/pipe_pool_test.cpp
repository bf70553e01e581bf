// SPDX-License-Identifier: Apache-2.0
#include "io/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <doctest/doctest.h>

using namespace sp::io;

TEST_SUITE("io.pipe_pool") {
    TEST_CASE("pipe_pool: empty pipes are cached and non-empty ones closed") {
        PipePool pool(65536, 8);
        auto p = pool.take();
        REQUIRE(p);
        CHECK(pool.in_use() == 1);
        CHECK((fcntl(p->read_end.get(), F_GETFL) & O_NONBLOCK) != 0);
        CHECK((fcntl(p->write_end.get(), F_GETFD) & FD_CLOEXEC) != 0);
        CHECK(fcntl(p->write_end.get(), F_GETPIPE_SZ) >= 4096);

        pool.give(std::move(*p), true);
        CHECK(pool.in_use() == 0);
        CHECK(pool.cached() == 1);

        auto q = pool.take();
        REQUIRE(q);
        CHECK(pool.cached() == 0);
        const char byte = 'x';
        REQUIRE(write(q->write_end.get(), &byte, 1) == 1);
        const int rfd = q->read_end.get();
        pool.give(std::move(*q), false);
        CHECK(pool.cached() == 0);
        CHECK(pool.in_use() == 0);
        CHECK(fcntl(rfd, F_GETFD) == -1);  // closed, so its byte cannot leak
    }

    TEST_CASE("pipe_pool: take fails when the cap is reached") {
        PipePool pool(65536, 2);
        auto a = pool.take();
        auto b = pool.take();
        REQUIRE(a);
        REQUIRE(b);
        CHECK_FALSE(pool.take());
        pool.give(std::move(*a), true);
        CHECK(pool.take());
    }

    TEST_CASE("pipe_pool: a refused F_SETPIPE_SZ keeps the default size when the size is absurd") {
        PipePool pool(0x7fffffffU, 4);
        auto p = pool.take();
        REQUIRE(p);
        CHECK(pool.resize_refused() == 1);
        CHECK(fcntl(p->write_end.get(), F_GETPIPE_SZ) > 0);
    }

    TEST_CASE("pipe_pool: grow stays within its page budget and gives pages back on close") {
        // 64 KiB base, 256 KiB grown: 48 extra pages each; a budget of 100
        // pages lets two pipes grow, not three.
        PipePool pool(65536, 8, 262144, 100);
        auto a = pool.take();
        auto b = pool.take();
        auto c = pool.take();
        REQUIRE(a);
        REQUIRE(b);
        REQUIRE(c);
        CHECK(a->size == 65536);
        CHECK(pool.grow(*a));
        CHECK(a->size == 262144);
        CHECK(fcntl(a->write_end.get(), F_GETPIPE_SZ) == 262144);
        CHECK_FALSE(pool.grow(*a));  // already grown
        CHECK(pool.grow(*b));
        CHECK(pool.grown_pages() == 96);
        CHECK_FALSE(pool.grow(*c));
        CHECK(c->size == 65536);

        pool.give(std::move(*a), true);  // cached: still holds its pages
        CHECK(pool.grown_pages() == 96);
        CHECK_FALSE(pool.grow(*c));
        pool.give(std::move(*b), false);  // closed: its pages are free again
        CHECK(pool.grown_pages() == 48);
        CHECK(pool.grow(*c));

        auto again = pool.take();  // the cached grown pipe comes back grown
        REQUIRE(again);
        CHECK(again->size == 262144);
    }

    TEST_CASE("pipe_pool: a pool without a grow budget never grows") {
        PipePool pool(65536, 2);
        auto p = pool.take();
        REQUIRE(p);
        CHECK_FALSE(pool.grow(*p));
        CHECK(fcntl(p->write_end.get(), F_GETPIPE_SZ) == 65536);
    }

    TEST_CASE("pipe_pool: pipe-user-pages-soft is readable") {
        // 0 means "unlimited" and is fine too; this only proves the reader works.
        CHECK(pipe_user_pages_soft() < (uint64_t{1} << 40));
    }
}
