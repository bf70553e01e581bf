// SPDX-License-Identifier: Apache-2.0
// When the kernel refuses SQEs (Ring::get_sqe() returns nullptr), nothing may
// be lost: accepts, polls, RECVs and cancels are armed again from the loop,
// and timers need no SQE at all (issue 11).
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <future>
#include <thread>

#include <doctest/doctest.h>

#include "harness.hpp"
#include "io/net.hpp"
#include "io/worker.hpp"

using namespace sp;
using namespace sp::io;
using namespace sp::io::test;

namespace {

uint64_t refused(Harness& h) {
    return h.call([](Worker& w) { return w.stats().sqe_refused; });
}

}  // namespace

TEST_SUITE("io.refusal") {
    TEST_CASE("listener: an accept the SQ refused is armed later and serves a client") {
        Harness h(DataPath::Splice);
        auto front = listen_tcp(SocketAddress(IpAddress::v4(0x7f000001), 0), false, 16);
        REQUIRE(front);
        const auto addr = *local_address(front->get());
        auto lfd = std::make_shared<UniqueFd>(std::move(*front));
        std::atomic<int> accepted{0};
        h.call([&, lfd](Worker& w) {
            // The first arm and the next retries all find no SQE.
            w.refuse_sqes_for_testing(4);
            (void)w.add_listener(
                std::move(*lfd),
                [&](Worker&, UniqueFd, const SocketAddress&, const SocketAddress&) { ++accepted; },
                [](Worker&, int, bool) {});
        });
        UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_storage ss;
        const socklen_t len = addr.to_sockaddr(ss);
        REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (accepted.load() == 0 && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(10ms);
        }
        CHECK(accepted.load() == 1);
        CHECK(refused(h) >= 4);
    }

    TEST_CASE("timers: a timer and a wait_fd timeout fire while the SQ refuses everything") {
        Harness h(DataPath::Splice);
        TcpPair p = tcp_pair();
        std::promise<void> fired;
        std::promise<int> waited;
        const int fd = p.b.get();
        h.call([&, fd](Worker& w) {
            w.refuse_sqes_for_testing(1000000);
            // What the relay does for a client waiting for a data channel.
            CHECK(w.add_timer(20ms, [&](Worker&) { fired.set_value(); }) != 0);
            CHECK(w.wait_fd(fd, POLLIN, 50ms, [&](Worker&, int res) { waited.set_value(res); }) !=
                  0);
        });
        auto f1 = fired.get_future();
        auto f2 = waited.get_future();
        REQUIRE(f1.wait_for(5s) == std::future_status::ready);
        REQUIRE(f2.wait_for(5s) == std::future_status::ready);
        CHECK(f2.get() == -ETIMEDOUT);
        h.call([](Worker& w) { w.refuse_sqes_for_testing(0); });
    }

    TEST_CASE("pump: a session whose first arms the SQ refused moves bytes and closes") {
        DataPath path = DataPath::Splice;
        SUBCASE("splice") {
            path = DataPath::Splice;
        }
        SUBCASE("copy") {
            path = DataPath::Copy;
        }
        Harness h(path);
        h.call([](Worker& w) { w.refuse_sqes_for_testing(3); });
        Link l = make_link(h);
        Endpoint client(l.client.get(), 3 << 20, 21);
        Endpoint backend(l.backend.get(), 2 << 20, 22);
        REQUIRE(drive({&client, &backend}, 20s));
        CHECK(backend.recv_hash == client.send_hash);
        CHECK(client.recv_hash == backend.send_hash);
        REQUIRE(h.closes.wait(1, 5s) == 1);
        CHECK(h.closes.records().front().reason == "eof");
        CHECK(refused(h) >= 3);
    }

    TEST_CASE("pump: a close whose cancels the SQ refused still resets both ends") {
        DataPath path = DataPath::Splice;
        SUBCASE("splice") {
            path = DataPath::Splice;
        }
        SUBCASE("copy") {
            path = DataPath::Copy;
        }
        Harness h(path);
        Link l = make_link(h);
        REQUIRE(send(l.client.get(), "ping", 4, 0) == 4);
        char b[4];
        REQUIRE(recv(l.backend.get(), b, 4, MSG_WAITALL) == 4);
        h.call([id = l.id](Worker& w) {
            w.refuse_sqes_for_testing(2);
            w.close_session(id, "closed");
        });
        REQUIRE(h.closes.wait(1, 5s) == 1);
        CHECK(drain_until_end(l.client.get(), 5s) == -ECONNRESET);
        CHECK(drain_until_end(l.backend.get(), 5s) == -ECONNRESET);
        CHECK(h.sessions() == 0);
        CHECK(h.pipes_in_use() == 0);
        CHECK(h.buffers_in_use() == 0);
    }
}
