// SPDX-License-Identifier: Apache-2.0
#include "io/worker.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <doctest/doctest.h>

#include "harness.hpp"

using namespace sp;
using namespace sp::io;
using namespace sp::io::test;

namespace {

DataPath pick_path() {
    DataPath p = DataPath::Splice;
    SUBCASE("splice") {
        p = DataPath::Splice;
    }
    SUBCASE("copy") {
        p = DataPath::Copy;
    }
    return p;
}

void set_linger_zero(int fd) {
    const linger lg{1, 0};
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
}

}  // namespace

TEST_SUITE("io.worker") {
    TEST_CASE("worker: 64 MiB each way arrive byte-exact when both directions run at once") {
        const DataPath path = pick_path();
        Harness h(path);
        // Copy must run on io_uring RECV/SEND here (kernel 6.x has buffer rings).
        CHECK(h.call([](Worker& w) { return w.uring_copy(); }) == (path == DataPath::Copy));
        Link l = make_link(h);
        constexpr uint64_t kSize = 64ULL << 20;
        Endpoint client(l.client.get(), kSize, 1);
        Endpoint backend(l.backend.get(), kSize, 2);
        REQUIRE(drive({&client, &backend}, 40s));
        CHECK(client.error == 0);
        CHECK(backend.error == 0);
        CHECK(backend.received == kSize);
        CHECK(client.received == kSize);
        CHECK(backend.recv_hash == client.send_hash);
        CHECK(client.recv_hash == backend.send_hash);
        REQUIRE(h.closes.wait(1, 5s) == 1);
        auto rec = h.closes.records().front();
        CHECK(rec.reason == "eof");
        MESSAGE("copy RECVs that found no buffer: "
                << h.call([](Worker& w) { return w.stats().recv_no_buffer; }));
        CHECK(rec.up == kSize);
        CHECK(rec.down == kSize);
        CHECK(h.pipes_in_use() == 0);
        CHECK(h.buffers_in_use() == 0);
    }

    TEST_CASE("worker: set_data_path switches new sessions, open ones keep theirs") {
        Harness h(DataPath::Splice);
        CHECK_FALSE(h.call([](Worker& w) { return w.uring_copy(); }));
        // A session started under splice, still open across the switch.
        Link before = make_link(h);
        h.call([](Worker& w) {
            w.set_data_path(DataPath::Copy);
            return 0;
        });
        CHECK(h.call([](Worker& w) { return w.uring_copy(); }));
        Link after = make_link(h);
        constexpr uint64_t kSize = 8ULL << 20;
        Endpoint c1(before.client.get(), kSize, 3);
        Endpoint b1(before.backend.get(), kSize, 4);
        Endpoint c2(after.client.get(), kSize, 5);
        Endpoint b2(after.backend.get(), kSize, 6);
        REQUIRE(drive({&c1, &b1, &c2, &b2}, 40s));
        CHECK(b1.recv_hash == c1.send_hash);
        CHECK(c1.recv_hash == b1.send_hash);
        CHECK(b2.recv_hash == c2.send_hash);
        CHECK(c2.recv_hash == b2.send_hash);
        REQUIRE(h.closes.wait(2, 5s) == 2);
        // The first moved its bytes through pipes, the second through the
        // buffer ring: both pools are back to empty either way.
        CHECK(h.pipes_in_use() == 0);
        CHECK(h.buffers_in_use() == 0);
    }

    TEST_CASE("worker: 100 concurrent sessions of different sizes arrive byte-exact") {
        Harness h(pick_path());
        constexpr int kSessions = 100;
        std::vector<Link> links;
        std::vector<std::unique_ptr<Endpoint>> eps;
        std::vector<Endpoint*> all;
        for (int i = 0; i < kSessions; ++i) {
            links.push_back(make_link(h));
            const uint64_t up = 1 + uint64_t(i) * 7919 % 400000 + uint64_t(i) * 131;
            const uint64_t down = 1 + uint64_t(kSessions - i) * 6983 % 300000;
            eps.push_back(std::make_unique<Endpoint>(links.back().client.get(), up, 10 + i));
            eps.push_back(std::make_unique<Endpoint>(links.back().backend.get(), down, 500 + i));
        }
        all.reserve(eps.size());
        for (auto& e : eps) {
            all.push_back(e.get());
        }
        REQUIRE(drive(all, 40s));
        for (std::size_t i = 0; i < std::size_t{kSessions}; ++i) {
            Endpoint& c = *eps[2 * i];
            Endpoint& b = *eps[2 * i + 1];
            CHECK(b.received == c.to_send);
            CHECK(c.received == b.to_send);
            CHECK(b.recv_hash == c.send_hash);
            CHECK(c.recv_hash == b.send_hash);
        }
        REQUIRE(h.closes.wait(kSessions, 10s) == kSessions);
        for (auto& r : h.closes.records()) {
            CHECK(r.reason == "eof");
        }
        CHECK(h.sessions() == 0);
    }

    TEST_CASE("worker: an empty session ends with eof and zero bytes") {
        Harness h(pick_path());
        Link l = make_link(h);
        REQUIRE(shutdown(l.client.get(), SHUT_WR) == 0);
        REQUIRE(shutdown(l.backend.get(), SHUT_WR) == 0);
        CHECK(drain_until_end(l.client.get(), 5s) == 0);
        CHECK(drain_until_end(l.backend.get(), 5s) == 0);
        REQUIRE(h.closes.wait(1, 5s) == 1);
        auto rec = h.closes.records().front();
        CHECK(rec.reason == "eof");
        CHECK(rec.up == 0);
        CHECK(rec.down == 0);
    }

    TEST_CASE("worker: the server speaks first and the client answers") {
        Harness h(pick_path());
        Link l = make_link(h);
        const char banner[] = "SSH-2.0-test\r\n";
        REQUIRE(send(l.backend.get(), banner, sizeof(banner) - 1, 0) == sizeof(banner) - 1);
        char buf[64] = {};
        pollfd p{l.client.get(), POLLIN, 0};
        REQUIRE(poll(&p, 1, 5000) == 1);
        REQUIRE(recv(l.client.get(), buf, sizeof(buf), 0) == sizeof(banner) - 1);
        CHECK(std::memcmp(buf, banner, sizeof(banner) - 1) == 0);
        const char reply[] = "SSH-2.0-client\r\n";
        REQUIRE(send(l.client.get(), reply, sizeof(reply) - 1, 0) == sizeof(reply) - 1);
        p = pollfd{l.backend.get(), POLLIN, 0};
        REQUIRE(poll(&p, 1, 5000) == 1);
        REQUIRE(recv(l.backend.get(), buf, sizeof(buf), 0) == sizeof(reply) - 1);
        CHECK(std::memcmp(buf, reply, sizeof(reply) - 1) == 0);
        l.client.reset();
        l.backend.reset();
        REQUIRE(h.closes.wait(1, 5s) == 1);
        CHECK(h.closes.records().front().reason == "eof");
    }

    TEST_CASE("worker: half-close lets the client receive the full answer after it stops sending") {
        Harness h(pick_path());
        Link l = make_link(h);
        Endpoint client(l.client.get(), 1 << 20, 3);
        Endpoint backend(l.backend.get(), 0, 4);
        backend.shut_when_sent = false;
        client.expect_eof = false;
        REQUIRE(drive({&client, &backend}, 20s));  // request, then FIN reaches the backend
        CHECK(backend.eof);
        CHECK(backend.received == 1 << 20);
        CHECK(backend.recv_hash == client.send_hash);

        backend.to_send = 3 << 20;  // the answer only starts after the client's FIN
        backend.shut_when_sent = true;
        client.expect_eof = true;
        REQUIRE(drive({&client, &backend}, 20s));
        CHECK(client.error == 0);
        CHECK(client.received == 3 << 20);
        CHECK(client.recv_hash == backend.send_hash);
        REQUIRE(h.closes.wait(1, 5s) == 1);
        auto rec = h.closes.records().front();
        CHECK(rec.reason == "eof");
        CHECK(rec.up == 1 << 20);
        CHECK(rec.down == 3 << 20);
    }

    TEST_CASE("worker: a reset on one side is passed on as a reset while other sessions carry on") {
        Harness h(pick_path());
        constexpr int kOthers = 6;
        std::vector<Link> others;
        others.reserve(kOthers);
        for (int i = 0; i < kOthers; ++i) {
            others.push_back(make_link(h));
        }
        Link by_client = make_link(h);
        Link by_backend = make_link(h);
        // Some traffic first, so the reset hits sessions that moved data.
        for (Link* l : {&by_client, &by_backend}) {
            REQUIRE(send(l->client.get(), "ping", 4, 0) == 4);
            char b[4];
            pollfd p{l->backend.get(), POLLIN, 0};
            REQUIRE(poll(&p, 1, 5000) == 1);
            REQUIRE(recv(l->backend.get(), b, 4, MSG_WAITALL) == 4);
        }

        std::vector<std::unique_ptr<Endpoint>> eps;
        std::vector<Endpoint*> all;
        for (int i = 0; i < kOthers; ++i) {
            eps.push_back(std::make_unique<Endpoint>(others[i].client.get(), 4 << 20, 20 + i));
            eps.push_back(std::make_unique<Endpoint>(others[i].backend.get(), 3 << 20, 40 + i));
        }
        all.reserve(eps.size());
        for (auto& e : eps) {
            all.push_back(e.get());
        }
        bool others_ok = false;
        std::thread traffic([&] { others_ok = drive(all, 30s); });

        set_linger_zero(by_client.client.get());
        by_client.client.reset();  // RST from the client
        set_linger_zero(by_backend.backend.get());
        by_backend.backend.reset();  // RST from the backend

        CHECK(drain_until_end(by_client.backend.get(), 5s) == -ECONNRESET);
        CHECK(drain_until_end(by_backend.client.get(), 5s) == -ECONNRESET);
        traffic.join();
        REQUIRE(others_ok);
        for (std::size_t i = 0; i < std::size_t{kOthers}; ++i) {
            CHECK(eps[2 * i + 1]->recv_hash == eps[2 * i]->send_hash);
            CHECK(eps[2 * i]->recv_hash == eps[2 * i + 1]->send_hash);
            CHECK(eps[2 * i + 1]->received == 4 << 20);
        }
        REQUIRE(h.closes.wait(kOthers + 2, 5s) == kOthers + 2);
        auto rc = h.closes.find(by_client.id);
        auto rb = h.closes.find(by_backend.id);
        REQUIRE(rc);
        REQUIRE(rb);
        CHECK(rc->reason == "reset-by-client");
        CHECK(rb->reason == "reset-by-peer");
        CHECK(rc->up == 4);
    }

    TEST_CASE("worker: a reader that does not read throttles the writer with bounded memory") {
        const DataPath path = pick_path();
        Harness h(path);
        Link l = make_link(h);
        Endpoint client(l.client.get(), 256ULL << 20, 5);
        Endpoint backend(l.backend.get(), 0, 6);
        backend.read = false;
        backend.expect_eof = false;
        backend.shut_when_sent = false;
        // Bounded: the writer stalls long before 256 MiB, so this times out.
        CHECK_FALSE(drive({&client, &backend}, 1500ms));
        const uint64_t stalled_at = client.sent;
        CHECK(stalled_at < (64ULL << 20));
        CHECK(drive({&client}, 300ms) == false);
        CHECK(client.sent - stalled_at < (1ULL << 20));  // still stuck: not buffered on our side
        // Splice: one pipe or buffer. io_uring copy: two buffers (one under
        // the stalled SEND, one filled behind it). Never more.
        CHECK(h.pipes_in_use() + h.buffers_in_use() <= (path == DataPath::Copy ? 2U : 1U));

        client.to_send = client.sent;  // stop writing; now let the backend read it all
        backend.read = true;
        backend.expect_eof = true;
        backend.shut_when_sent = true;
        REQUIRE(drive({&client, &backend}, 20s));
        CHECK(backend.received == client.sent);
        CHECK(backend.recv_hash == client.send_hash);
    }

    TEST_CASE("worker: idle sessions hold no pipes and no buffers") {
        Harness h(pick_path());
        constexpr int kSessions = 20;
        std::vector<Link> links;
        for (int i = 0; i < kSessions; ++i) {
            links.push_back(make_link(h));
            Link& l = links.back();
            char b[1000] = {};
            REQUIRE(send(l.client.get(), b, sizeof(b), 0) == sizeof(b));
            REQUIRE(send(l.backend.get(), b, 500, 0) == 500);
            pollfd p{l.backend.get(), POLLIN, 0};
            REQUIRE(poll(&p, 1, 5000) == 1);
            REQUIRE(recv(l.backend.get(), b, sizeof(b), MSG_WAITALL) == sizeof(b));
            p = pollfd{l.client.get(), POLLIN, 0};
            REQUIRE(poll(&p, 1, 5000) == 1);
            REQUIRE(recv(l.client.get(), b, 500, MSG_WAITALL) == 500);
        }
        CHECK(h.sessions() == kSessions);
        CHECK(h.pipes_in_use() == 0);
        CHECK(h.buffers_in_use() == 0);
    }

    TEST_CASE("worker: a silent session is closed by its idle timeout") {
        Harness h(pick_path());
        Link quiet = make_link(h, 1);
        Link forever = make_link(h, 0);
        REQUIRE(h.closes.wait(1, 5s) == 1);
        auto rec = h.closes.records().front();
        CHECK(rec.id == quiet.id);
        CHECK(rec.reason == "idle-timeout");
        CHECK(drain_until_end(quiet.client.get(), 2s) == -ECONNRESET);
        CHECK(h.sessions() == 1);
    }

    TEST_CASE("worker: close_session resets both ends and reports the caller's reason") {
        Harness h(pick_path());
        Link l = make_link(h);
        SessionId id = l.id;
        h.call([id](Worker& w) { w.close_session(id, "closed"); });
        REQUIRE(h.closes.wait(1, 5s) == 1);
        CHECK(h.closes.records().front().reason == "closed");
        CHECK(drain_until_end(l.client.get(), 2s) == -ECONNRESET);
        CHECK(drain_until_end(l.backend.get(), 2s) == -ECONNRESET);
        // A stale id is a no-op, even after the slot was reused.
        Link next = make_link(h);
        CHECK(next.id.slot == id.slot);
        CHECK(next.id.gen != id.gen);
        h.call([id](Worker& w) { w.close_session(id, "closed"); });
        CHECK(h.sessions() == 1);
    }

    TEST_CASE("worker: reused slots carry their own bytes when sessions churn") {
        Harness h(pick_path());
        for (int round = 0; round < 30; ++round) {
            Link a = make_link(h);
            Link b = make_link(h);
            h.call([id = a.id](Worker& w) { w.close_session(id, "closed"); });
            Endpoint c(b.client.get(), 100000 + round, 70 + round);
            Endpoint s(b.backend.get(), 50000, 90 + round);
            REQUIRE(drive({&c, &s}, 10s));
            CHECK(s.recv_hash == c.send_hash);
            CHECK(c.recv_hash == s.send_hash);
        }
        REQUIRE(h.closes.wait(60, 5s) == 60);
        auto stale = h.call([](Worker& w) { return w.stats().stale_completions; });
        CHECK(stale == 0);
    }

    TEST_CASE("worker: timers fire once and cancelled timers never run") {
        Harness h(DataPath::Splice);
        std::atomic<int> fired{0};
        std::atomic<int> cancelled{0};
        h.call([&](Worker& w) {
            (void)w.add_timer(20ms, [&](Worker&) { ++fired; });
            uint64_t t = w.add_timer(50ms, [&](Worker&) { ++cancelled; });
            w.cancel_timer(t);
        });
        const auto deadline = std::chrono::steady_clock::now() + 3s;
        while (fired.load() == 0 && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(10ms);
        }
        std::this_thread::sleep_for(100ms);
        CHECK(fired.load() == 1);
        CHECK(cancelled.load() == 0);
    }

    TEST_CASE("worker: wait_fd reports readiness and times out on a silent socket") {
        Harness h(DataPath::Splice);
        TcpPair p = tcp_pair();
        std::promise<int> silent;
        std::promise<int> ready;
        int fd = p.b.get();
        h.call([&, fd](Worker& w) {
            (void)w.wait_fd(fd, POLLIN, 100ms, [&](Worker&, int res) { silent.set_value(res); });
        });
        auto f1 = silent.get_future();
        REQUIRE(f1.wait_for(5s) == std::future_status::ready);
        CHECK(f1.get() == -ETIMEDOUT);
        REQUIRE(send(p.a.get(), "x", 1, 0) == 1);
        h.call([&, fd](Worker& w) {
            (void)w.wait_fd(fd, POLLIN, 5000ms, [&](Worker&, int res) { ready.set_value(res); });
        });
        auto f2 = ready.get_future();
        REQUIRE(f2.wait_for(5s) == std::future_status::ready);
        CHECK((f2.get() & POLLIN) != 0);
    }

    TEST_CASE("worker: request_stop waits for sessions and stop_now closes them") {
        auto w = Worker::create(WorkerOptions{});
        REQUIRE(w);
        Worker& worker = **w;
        worker.start();
        CloseLog log;
        TcpPair c = tcp_pair();
        TcpPair p = tcp_pair();
        auto cf = std::make_shared<UniqueFd>(std::move(c.b));
        auto pf = std::make_shared<UniqueFd>(std::move(p.a));
        // start_session takes non-blocking sockets only.
        for (const auto& fd : {cf, pf}) {
            REQUIRE(fcntl(fd->get(), F_SETFL, fcntl(fd->get(), F_GETFL) | O_NONBLOCK) == 0);
        }
        worker.post([&, cf, pf](Worker& wk) {
            (void)wk.start_session(
                std::move(*cf), std::move(*pf),
                [&](Worker&, SessionId id, const SessionEnd& e) { log.add(id, e); }, 0);
        });
        worker.request_stop();
        std::this_thread::sleep_for(100ms);
        CHECK(log.wait(1, 0ms) == 0);  // still running: a session is open
        worker.stop_now();
        worker.join();
        REQUIRE(log.wait(1, 0ms) == 1);
        CHECK(log.records().front().reason == "closed");
    }
}

TEST_SUITE("io.worker") {
    TEST_CASE("worker: sessions copy through buffers when the pipe cap is reached") {
        WorkerOptions opts;
        opts.max_pipes = 1;
        Harness h(DataPath::Splice, opts);
        // A session whose backend does not read keeps the only pipe full.
        Link stuck = make_link(h);
        Endpoint writer(stuck.client.get(), 64ULL << 20, 7);
        writer.expect_eof = false;
        CHECK_FALSE(drive({&writer}, 500ms));
        REQUIRE(h.pipes_in_use() == 1);
        constexpr int kSessions = 8;
        std::vector<Link> links;
        std::vector<std::unique_ptr<Endpoint>> eps;
        std::vector<Endpoint*> all;
        for (int i = 0; i < kSessions; ++i) {
            links.push_back(make_link(h));
            eps.push_back(std::make_unique<Endpoint>(links.back().client.get(), 2 << 20, 800 + i));
            eps.push_back(std::make_unique<Endpoint>(links.back().backend.get(), 1 << 20, 900 + i));
        }
        all.reserve(eps.size());
        for (auto& e : eps) {
            all.push_back(e.get());
        }
        REQUIRE(drive(all, 30s));
        for (std::size_t i = 0; i < std::size_t{kSessions}; ++i) {
            CHECK(eps[2 * i + 1]->recv_hash == eps[2 * i]->send_hash);
            CHECK(eps[2 * i]->recv_hash == eps[2 * i + 1]->send_hash);
        }
        auto exhausted = h.call([](Worker& w) { return w.stats().pipe_exhausted; });
        MESSAGE("fills through a buffer for lack of a pipe: " << exhausted);
        CHECK(exhausted > 0);
        REQUIRE(h.closes.wait(kSessions, 5s) == kSessions);
        CHECK(h.pipes_in_use() == 1);
        CHECK(h.buffers_in_use() == 0);
    }
}

TEST_SUITE("io.worker") {
    TEST_CASE("worker: a copy RECV that finds no free buffer waits for one instead of failing") {
        WorkerOptions opts;
        opts.copy_buffers = 2;
        Harness h(DataPath::Copy, opts);
        REQUIRE(h.call([](Worker& w) { return w.uring_copy(); }));
        // Two sessions whose backends do not read hold both buffers.
        Link s1 = make_link(h);
        Link s2 = make_link(h);
        Endpoint w1(s1.client.get(), 64ULL << 20, 11);
        Endpoint w2(s2.client.get(), 64ULL << 20, 12);
        w1.expect_eof = w2.expect_eof = false;
        CHECK_FALSE(drive({&w1, &w2}, 800ms));
        REQUIRE(h.buffers_in_use() == 2);

        Link t = make_link(h);
        Endpoint tc(t.client.get(), 1 << 20, 13);
        Endpoint tb(t.backend.get(), 1 << 20, 14);
        CHECK_FALSE(drive({&tc, &tb}, 300ms));
        CHECK(tb.received == 0);
        CHECK(tc.received == 0);
        CHECK(h.call([](Worker& w) { return w.stats().recv_no_buffer; }) > 0);

        w1.to_send = w1.sent;
        w2.to_send = w2.sent;
        w1.expect_eof = w2.expect_eof = true;
        Endpoint b1(s1.backend.get(), 0, 15);
        Endpoint b2(s2.backend.get(), 0, 16);
        REQUIRE(drive({&w1, &w2, &b1, &b2, &tc, &tb}, 30s));
        CHECK(b1.received == w1.sent);
        CHECK(b1.recv_hash == w1.send_hash);
        CHECK(b2.recv_hash == w2.send_hash);
        CHECK(tb.recv_hash == tc.send_hash);
        CHECK(tc.recv_hash == tb.send_hash);
        REQUIRE(h.closes.wait(3, 5s) == 3);
        CHECK(h.buffers_in_use() == 0);
    }
}
