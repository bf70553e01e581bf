// SPDX-License-Identifier: Apache-2.0
#include <sys/socket.h>

#include <cstdio>

#include <doctest/doctest.h>

#include "harness.hpp"
#include "io/worker.hpp"

using namespace sp;
using namespace sp::io;
using namespace sp::io::test;

TEST_SUITE("io.threads") {
    TEST_CASE("threads: idle sessions do not add kernel threads when their count grows 10x") {
        DataPath path = DataPath::Splice;
        SUBCASE("splice") {
            path = DataPath::Splice;
        }
        SUBCASE("copy") {
            path = DataPath::Copy;
        }
        Harness h(path);
        std::vector<Link> links;
        auto open = [&](size_t n) {
            while (links.size() < n) {
                links.push_back(make_link(h));
                // One byte each way, so every socket has been read once.
                Link& l = links.back();
                char b = 'x';
                REQUIRE(send(l.client.get(), &b, 1, 0) == 1);
                REQUIRE(send(l.backend.get(), &b, 1, 0) == 1);
                REQUIRE(recv(l.backend.get(), &b, 1, MSG_WAITALL) == 1);
                REQUIRE(recv(l.client.get(), &b, 1, MSG_WAITALL) == 1);
            }
            REQUIRE(h.sessions() == n);
        };
        open(50);
        const size_t at_50 = thread_count();
        open(500);
        const size_t at_500 = thread_count();
        MESSAGE("threads with 50 idle sessions: " << at_50 << ", with 500: " << at_500);
        CHECK(at_500 <= at_50 + 2);
        CHECK(h.pipes_in_use() == 0);
        CHECK(h.buffers_in_use() == 0);
    }
}
