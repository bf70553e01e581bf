// SPDX-License-Identifier: Apache-2.0
// Running out of file descriptors (EMFILE) is a resource error, not a
// crash: the relay logs it rate-limited, pauses accepting, keeps established
// sessions byte-exact and serves again once descriptors are free.
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "fixture.hpp"

using namespace sp::test;
using namespace std::chrono_literals;

TEST_SUITE("integration.resource") {
    TEST_CASE("resource: EMFILE on the relay is logged and survived, sessions carry on") {
        TestServer sink(TestServer::Mode::HashReply);
        Deployment d;
        d.make_keys({"agent1"});
        // The relay raises its soft limit to the hard one at start: make
        // both small so a few dozen clients exhaust it.
        d.relay_prefix = {"/usr/bin/prlimit", "--nofile=96:96", "--"};
        d.limits_extra = "pending_timeout_ms = 1500\n";
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        d.start_agent(Deployment::service("up", fmt::format("127.0.0.1:{}", port),
                                          fmt::format("127.0.0.1:{}", sink.port())),
                      2);
        // One whole exchange first, so the agent's channels are up before
        // the upload: a bare connect-and-close probe may time out pending
        // under a slow sanitizer build.
        bool probed = false;
        const auto probe_until = std::chrono::steady_clock::now() + 15s;
        while (!probed && std::chrono::steady_clock::now() < probe_until) {
            probed = exchange(port, "probe") == sha256_hex("probe");
            if (!probed) {
                std::this_thread::sleep_for(100ms);
            }
        }
        REQUIRE(probed);
        REQUIRE(d.wait_relay_sessions(0, 5s));

        // A long upload that must survive the exhaustion byte-exact.
        auto up = connect_to("127.0.0.1", port);
        REQUIRE(up);
        REQUIRE(d.wait_relay_sessions(1, 10s));
        Sha256 mine;
        std::vector<char> buf(1 << 16);
        uint64_t off = 0;
        const auto send_chunk = [&](uint64_t n) {
            for (uint64_t end = off + n; off < end; off += buf.size()) {
                fill_pattern(11, off, buf.data(), buf.size());
                mine.update(buf.data(), buf.size());
                REQUIRE(send_all(up.get(), buf.data(), buf.size()));
            }
        };
        send_chunk(4ULL << 20);

        // Far more silent clients than the relay has descriptors for.
        std::vector<sp::UniqueFd> crowd;
        crowd.reserve(200);
        for (int i = 0; i < 200; ++i) {
            if (auto fd = connect_to("127.0.0.1", port, 1s)) {
                crowd.push_back(std::move(fd));
            }
        }
        CHECK(d.relay.wait_for_output("resource-limit", 10s));
        send_chunk(28ULL << 20);
        ::shutdown(up.get(), SHUT_WR);
        CHECK(recv_all(up.get()) == mine.hex());

        // Descriptors come back: the relay serves new clients again.
        crowd.clear();
        bool served = false;
        const auto until = std::chrono::steady_clock::now() + 20s;
        while (!served && std::chrono::steady_clock::now() < until) {
            served = exchange(port, "again") == sha256_hex("again");
            if (!served) {
                std::this_thread::sleep_for(200ms);
            }
        }
        CHECK(served);
        // Rate-limited: 200 refusals do not make 200 warnings.
        CHECK(count_occurrences(d.relay.output(), "resource-limit") < 20);
    }
}
