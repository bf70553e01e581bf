// SPDX-License-Identifier: Apache-2.0
// Bytes through relay and agent (issue 4's scenarios), hashed at both ends.
// Runs once per data path (SP_TEST_DATA_PATH = splice | copy).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "fixture.hpp"

using namespace sp::test;
using namespace std::chrono_literals;

namespace {

struct Running {
    Deployment d;
    uint16_t port = 0;

    explicit Running(TestServer& backend, unsigned pool = 4, const std::string& extra = "") {
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        port = free_port();
        d.start_agent(Deployment::service("svc", fmt::format("127.0.0.1:{}", port),
                                          fmt::format("127.0.0.1:{}", backend.port()), extra),
                      pool);
        REQUIRE(d.wait_relay_listener("svc", 10s));
    }
};

// Streams `up` pattern bytes to a HashReply backend and checks its hash.
bool upload_matches(uint16_t port, uint64_t bytes, uint64_t seed) {
    auto fd = connect_to("127.0.0.1", port);
    if (!fd) {
        return false;
    }
    Sha256 mine;
    std::vector<char> buf(1 << 16);
    for (uint64_t off = 0; off < bytes;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), bytes - off));
        fill_pattern(seed, off, buf.data(), n);
        mine.update(buf.data(), n);
        if (!send_all(fd.get(), buf.data(), n)) {
            return false;
        }
        off += n;
    }
    ::shutdown(fd.get(), SHUT_WR);
    return recv_all(fd.get()) == mine.hex();
}

}  // namespace

TEST_SUITE("integration.data_plane") {
    TEST_CASE("data: 256 MiB each way in one session, byte-exact") {
        TestServer echo(TestServer::Mode::Echo);
        Running r(echo);
        auto fd = connect_to("127.0.0.1", r.port);
        REQUIRE(fd);
        constexpr uint64_t kBytes = 256ULL << 20;
        Sha256 sent;
        Sha256 got;
        uint64_t received = 0;
        std::thread reader([&] {
            std::vector<char> buf(1 << 16);
            for (;;) {
                const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
                if (n <= 0) {
                    break;
                }
                got.update(buf.data(), static_cast<size_t>(n));
                received += static_cast<uint64_t>(n);
            }
        });
        std::vector<char> buf(1 << 16);
        for (uint64_t off = 0; off < kBytes; off += buf.size()) {
            fill_pattern(7, off, buf.data(), buf.size());
            sent.update(buf.data(), buf.size());
            REQUIRE(send_all(fd.get(), buf.data(), buf.size()));
        }
        ::shutdown(fd.get(), SHUT_WR);
        reader.join();
        CHECK(received == kBytes);
        CHECK(got.hex() == sent.hex());
        REQUIRE(r.d.relay.wait_for_output("BYTES_UP=268435456 BYTES_DOWN=268435456", 10s));
        CHECK(r.d.agent.wait_for_output("BYTES_UP=268435456 BYTES_DOWN=268435456", 10s));
    }

    TEST_CASE("data: 200 concurrent sessions of different sizes") {
        TestServer sink(TestServer::Mode::HashReply);
        Running r(sink, 16);
        std::atomic<int> good{0};
        std::vector<std::thread> clients;
        clients.reserve(200);
        for (int i = 0; i < 200; ++i) {
            clients.emplace_back([&, i] {
                const uint64_t size = static_cast<uint64_t>(i) * 7919 * (i % 7 + 1);
                if (upload_matches(r.port, size, static_cast<uint64_t>(i))) {
                    ++good;
                }
            });
        }
        for (auto& t : clients) {
            t.join();
        }
        CHECK(good.load() == 200);
        CHECK(r.d.relay.wait_for_output("session-close", 20s, 200));
    }

    TEST_CASE("data: an empty session opens and closes cleanly") {
        TestServer echo(TestServer::Mode::Echo);
        Running r(echo);
        CHECK(exchange(r.port, "").empty());
        CHECK(r.d.relay.wait_for_output("BYTES_UP=0 BYTES_DOWN=0", 10s));
    }

    TEST_CASE("data: a server-speaks-first backend's banner reaches a silent client") {
        TestServer banner(TestServer::Mode::Banner);
        Running r(banner);
        auto fd = connect_to("127.0.0.1", r.port);
        REQUIRE(fd);
        const auto got = recv_n(fd.get(), 10);
        CHECK(got.rfind("BANNER ", 0) == 0);
        REQUIRE(send_all(fd.get(), "ping\n", 5));
        ::shutdown(fd.get(), SHUT_WR);
        const auto rest = recv_all(fd.get());
        CHECK(rest.find("ping\n") != std::string::npos);
    }

    TEST_CASE("data: a client that half-closes still receives the whole answer") {
        TestServer source(TestServer::Mode::Source);
        Running r(source);
        auto fd = connect_to("127.0.0.1", r.port);
        REQUIRE(fd);
        constexpr uint64_t kBytes = 32ULL << 20;
        std::string hdr(8, '\0');
        for (int i = 0; i < 8; ++i) {
            hdr[static_cast<size_t>(i)] = static_cast<char>((kBytes >> (56 - 8 * i)) & 0xff);
        }
        REQUIRE(send_all(fd.get(), hdr.data(), hdr.size()));
        ::shutdown(fd.get(), SHUT_WR);  // nothing more from us; the answer must still come
        Sha256 expect;
        std::vector<char> buf(1 << 16);
        for (uint64_t off = 0; off < kBytes; off += buf.size()) {
            fill_pattern(kBytes, off, buf.data(), buf.size());
            expect.update(buf.data(), buf.size());
        }
        const auto got = recv_all(fd.get());
        CHECK(got.size() == kBytes);
        CHECK(sha256_hex(got) == expect.hex());
    }

    TEST_CASE("data: a client that vanishes mid-transfer frees its backend, others carry on") {
        TestServer sink(TestServer::Mode::HashReply);
        Running r(sink);
        auto fd = connect_to("127.0.0.1", r.port);
        REQUIRE(fd);
        std::vector<char> buf(1 << 20, 'x');
        REQUIRE(send_all(fd.get(), buf.data(), buf.size()));
        // Vanish only once the relay has paired us: a client reset before
        // accept never becomes a session at all.
        sockaddr_in self{};
        socklen_t len = sizeof self;
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&self), &len);
        REQUIRE(
            r.d.agent.wait_for_output(fmt::format("CLIENT_PORT={}", ntohs(self.sin_port)), 10s));
        std::atomic<bool> other_ok{false};
        std::thread other([&] { other_ok = upload_matches(r.port, 64ULL << 20, 99); });
        // An abortive close: the relay must pass it on, not wait for more.
        const linger lg{1, 0};
        ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        fd.reset();
        other.join();
        CHECK(other_ok.load());
        CHECK(r.d.relay.wait_for_output("REASON=reset-by-client", 10s));
        // Both backend connections end: the aborted one and the finished one.
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (sink.closed() < 2 && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(20ms);
        }
        CHECK(sink.closed() == 2);
    }

    TEST_CASE("data: a backend that refuses closes the client promptly") {
        const uint16_t dead = free_port();  // nothing listens there
        TestServer unused(TestServer::Mode::Echo);
        Deployment d;
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        d.start_agent(Deployment::service("svc", fmt::format("127.0.0.1:{}", port),
                                          fmt::format("127.0.0.1:{}", dead)));
        REQUIRE(d.relay.wait_for_output("listener-open", 10s));
        auto fd = connect_to("127.0.0.1", port);
        REQUIRE(fd);
        set_timeouts(fd.get(), 5s);
        const auto t0 = std::chrono::steady_clock::now();
        char b = 0;
        const ssize_t n = ::recv(fd.get(), &b, 1, 0);
        CHECK(n == 0);  // EOF, not a timeout
        CHECK(std::chrono::steady_clock::now() - t0 < 4s);
        CHECK(d.agent.wait_for_output("backend-failed", 5s));
        CHECK(d.relay.wait_for_output("backend-failed", 5s));
    }

    TEST_CASE("data: a reload that removes a service lets its long transfer finish intact") {
        TestServer sink(TestServer::Mode::HashReply);
        Running r(sink);
        auto fd = connect_to("127.0.0.1", r.port);
        REQUIRE(fd);
        Sha256 mine;
        std::vector<char> buf(1 << 16);
        uint64_t off = 0;
        const auto send_chunk = [&](uint64_t n) {
            for (uint64_t end = off + n; off < end; off += buf.size()) {
                fill_pattern(5, off, buf.data(), buf.size());
                mine.update(buf.data(), buf.size());
                REQUIRE(send_all(fd.get(), buf.data(), buf.size()));
            }
        };
        send_chunk(8ULL << 20);
        // Rewrite the agent's config without the service and reload.
        const auto other = free_port();
        r.d.write_agent_config(
            "agent1",
            Deployment::service("other", fmt::format("127.0.0.1:{}", other), "127.0.0.1:9"));
        r.d.agent.signal(SIGHUP);
        REQUIRE(r.d.relay.wait_for_output(
            fmt::format("LISTEN_ADDR=127.0.0.1:{} AGENT=agent1 REASON=config", r.port), 10s));
        // The workers close their sockets just after the control thread logs it.
        bool closed = false;
        for (int i = 0; i < 100 && !closed; ++i) {
            closed = refused("127.0.0.1", r.port);
            std::this_thread::sleep_for(20ms);
        }
        CHECK(closed);
        send_chunk(56ULL << 20);
        ::shutdown(fd.get(), SHUT_WR);
        CHECK(recv_all(fd.get()) == mine.hex());
    }
}
