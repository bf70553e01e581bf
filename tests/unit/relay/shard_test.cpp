// SPDX-License-Identifier: Apache-2.0
// The per-worker shard on real workers and loopback sockets: channels are
// verified on the worker that issued their token, kept idle or given to a
// waiting client, and a burst of clients asks for tokens in batches.
#include "relay/shard.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>
#include <tuple>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "io/net.hpp"
#include "net.hpp"
#include "obs/prometheus.hpp"
#include "relay/tokens.hpp"

using namespace sp;
using namespace sp::relay;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

const SocketAddress kLoopback(*IpAddress::parse("127.0.0.1"), 0);

struct Sent {
    unsigned worker;
    uint64_t agent;
    std::vector<control::Token> tokens;
    bool initial;
};

struct Fixture {
    std::vector<std::unique_ptr<io::Worker>> workers;
    std::vector<io::Worker*> ptrs;
    io::Sharded<Shard> shards;
    Admission admission{AdmissionLimits{}};
    std::mutex mu;
    std::vector<Sent> sent;

    explicit Fixture(unsigned n) {
        for (unsigned i = 0; i < n; ++i) {
            io::WorkerOptions o;
            o.index = i;
            auto w = io::Worker::create(o);
            REQUIRE(w);
            workers.push_back(std::move(*w));
            ptrs.push_back(workers.back().get());
        }
        auto rules = std::make_shared<const AgentRules>();
        shards.start(ptrs, [&](unsigned i) {
            ShardHooks hooks{[](UniqueFd, const SocketAddress&, Clock::time_point) {},
                             [this](unsigned worker, uint64_t agent,
                                    std::vector<control::Token> tokens, bool initial) {
                                 const std::lock_guard lock(mu);
                                 sent.push_back({worker, agent, std::move(tokens), initial});
                             }};
            return std::make_unique<Shard>(i, shards, SessionIds{1000, n}, admission,
                                           std::move(hooks), ShardLimits{5s, 0}, rules, 77 + i);
        });
        for (auto& w : workers) {
            w->start();
        }
    }
    ~Fixture() {
        for (auto& w : workers) {
            w->stop_now();
            w->join();
        }
    }

    /// Runs fn(shard, worker) on worker `i` and waits for it (bounded).
    template <class Fn>
    auto call(unsigned i, Fn fn) {
        using R = decltype(fn(std::declval<Shard&>(), std::declval<io::Worker&>()));
        auto prom = std::make_shared<std::promise<R>>();
        auto fut = prom->get_future();
        shards.invoke_on(i, [prom, fn = std::move(fn)](Shard& s, io::Worker& w) mutable {
            if constexpr (std::is_void_v<R>) {
                fn(s, w);
                prom->set_value();
            } else {
                prom->set_value(fn(s, w));
            }
        });
        REQUIRE(fut.wait_for(10s) == std::future_status::ready);
        return fut.get();
    }

    void agent(uint64_t id, unsigned cap, const std::string& service = "svc") {
        for (unsigned i = 0; i < shards.size(); ++i) {
            call(i, [=](Shard& s, io::Worker& w) {
                s.add_agent(w, id, "agent-" + std::to_string(id), cap);
                auto p = std::make_shared<ServicePolicy>();
                p->name = service;
                p->agents = {id};
                s.set_service(w, p);
            });
        }
    }

    /// `n` tokens of `agent` issued by worker `worker`.
    std::vector<control::Token> issue(unsigned worker, uint64_t agent, unsigned n) {
        call(worker, [=](Shard& s, io::Worker&) { s.issue(agent, n); });
        const std::lock_guard lock(mu);
        REQUIRE(!sent.empty());
        REQUIRE(sent.back().initial);
        return sent.back().tokens;
    }
    control::Token grant(unsigned worker, uint64_t agent) {
        auto t = issue(worker, agent, 1);
        REQUIRE(t.size() == 1);
        CHECK(token_owner(t[0]) == worker);
        return t[0];
    }
    /// Batches the pools sent on their own (not issue()'s).
    std::vector<size_t> refills() {
        const std::lock_guard lock(mu);
        std::vector<size_t> out;
        for (const auto& s : sent) {
            if (!s.initial) {
                out.push_back(s.tokens.size());
            }
        }
        return out;
    }

    /// Presents a channel on worker `at`; returns the agent's end.
    UniqueFd present(unsigned at, const control::Token& t, bool early = false) {
        auto [agent_end, relay_end] = pair();
        auto f = std::make_shared<UniqueFd>(std::move(relay_end));
        call(at,
             [=](Shard& s, io::Worker& w) { s.channel(w, std::move(*f), kLoopback, t, early); });
        return std::move(agent_end);
    }

    /// A client listener of `service` on worker `at`; returns its port.
    uint16_t listen(unsigned at, const std::string& service) {
        auto fd = io::listen_tcp(kLoopback, false, 64);
        REQUIRE(fd);
        const auto addr = io::local_address(fd->get());
        REQUIRE(addr);
        auto f = std::make_shared<UniqueFd>(std::move(*fd));
        call(at, [=](Shard& s, io::Worker& w) {
            s.add_listener(w, addr->port(), std::move(*f), service, *addr);
        });
        return addr->port();
    }

    static std::pair<UniqueFd, UniqueFd> pair() {
        auto l = io::listen_tcp(kLoopback, false, 8);
        REQUIRE(l);
        const auto addr = io::local_address(l->get());
        UniqueFd a = test::connect_to("127.0.0.1", addr->port());
        REQUIRE(a);
        UniqueFd b(::accept4(l->get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        REQUIRE(b);
        test::set_timeouts(a.get(), 5s);
        return {std::move(a), std::move(b)};
    }
};

control::Binding read_binding(int fd) {
    std::string head = test::recv_n(fd, control::kBindingFixedSize);
    REQUIRE(head.size() == control::kBindingFixedSize);
    const size_t len = (static_cast<uint8_t>(head[4]) << 8) | static_cast<uint8_t>(head[5]);
    head += test::recv_n(fd, len);
    const auto r = control::decode_binding(
        std::span(reinterpret_cast<const uint8_t*>(head.data()), head.size()));
    REQUIRE(r.status == control::DecodeStatus::Ok);
    return r.binding;
}

bool closed_by_relay(int fd) {
    char b = 0;
    return ::recv(fd, &b, 1, 0) == 0;
}

template <class Pred>
bool eventually(Pred pred) {
    for (int i = 0; i < 500; ++i) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(10ms);
    }
    return false;
}

}  // namespace

TEST_SUITE("relay.shard") {
    TEST_CASE("shard: a verified channel is kept idle and carries the next client") {
        Fixture f(2);
        f.agent(1, 2);
        const auto t = f.grant(0, 1);
        UniqueFd agent_end = f.present(0, t);
        CHECK(f.call(0, [](Shard& s, io::Worker&) { return s.idle_channels(); }) == 1);
        const uint16_t port = f.listen(0, "svc");
        UniqueFd client = test::connect_to("127.0.0.1", port);
        REQUIRE(client);
        test::set_timeouts(client.get(), 5s);
        const auto b = read_binding(agent_end.get());
        CHECK(b.service == "svc");
        CHECK(b.session_id == 1000);  // base + 0 x 2 workers + worker 0
        REQUIRE(test::send_all(client.get(), "ping", 4));
        CHECK(test::recv_n(agent_end.get(), 4) == "ping");
        REQUIRE(test::send_all(agent_end.get(), "pong", 4));
        CHECK(test::recv_n(client.get(), 4) == "pong");
    }

    TEST_CASE("shard: a channel landing on another worker goes to the token's worker") {
        Fixture f(2);
        f.agent(1, 2);
        const auto t = f.grant(1, 1);
        UniqueFd agent_end = f.present(0, t);
        CHECK(f.call(1, [](Shard& s, io::Worker&) { return s.idle_channels(); }) == 1);
        CHECK(f.call(0, [](Shard& s, io::Worker&) { return s.idle_channels(); }) == 0);
    }

    TEST_CASE("shard: unknown, reused, foreign and expired tokens close the channel") {
        Fixture f(2);
        f.agent(1, 2);
        const auto t = f.grant(0, 1);
        UniqueFd first = f.present(0, t);
        UniqueFd again = f.present(0, t);
        CHECK(closed_by_relay(again.get()));
        auto forged = t;
        forged[31] ^= 1;
        CHECK(closed_by_relay(f.present(0, forged).get()));
        auto foreign = t;
        foreign[0] = 0x7f;  // a worker this relay does not have
        CHECK(closed_by_relay(f.present(1, foreign).get()));
        f.call(0, [](Shard& s, io::Worker&) { s.set_limits({5s, 0, 1ms}); });
        const auto stale = f.grant(0, 1);
        std::this_thread::sleep_for(5ms);
        CHECK(closed_by_relay(f.present(0, stale).get()));
        CHECK(f.call(0, [](Shard& s, io::Worker&) { return s.idle_channels(); }) == 1);
    }

    TEST_CASE("shard: a channel that spoke before its binding header is dropped") {
        Fixture f(1);
        f.agent(1, 2);
        const auto t = f.grant(0, 1);
        UniqueFd agent_end = f.present(0, t, true);
        CHECK(closed_by_relay(agent_end.get()));
        CHECK(f.call(0, [](Shard& s, io::Worker&) { return s.idle_channels(); }) == 0);
        // Its token is used up.
        CHECK(closed_by_relay(f.present(0, t).get()));
    }

    TEST_CASE("shard: waiting clients get tokens at once, never more than they need") {
        Fixture f(1);
        f.agent(1, 0);  // pool 0: every channel on demand
        const uint16_t port = f.listen(0, "svc");
        std::vector<UniqueFd> clients;
        for (int i = 0; i < 3; ++i) {
            clients.push_back(test::connect_to("127.0.0.1", port));
            REQUIRE(clients.back());
        }
        REQUIRE(eventually([&] {
            const auto r = f.refills();
            size_t n = 0;
            for (const size_t k : r) {
                n += k;
            }
            return n == 3;
        }));
        CHECK(f.call(0, [](Shard& s, io::Worker&) { return s.pending_clients(); }) == 3);
        std::vector<control::Token> tokens;
        {
            const std::lock_guard lock(f.mu);
            for (const auto& s : f.sent) {
                tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
            }
        }
        UniqueFd agent_end = f.present(0, tokens[0]);
        const auto b = read_binding(agent_end.get());
        CHECK(b.service == "svc");
        CHECK(f.call(0, [](Shard& s, io::Worker&) { return s.pending_clients(); }) == 2);
        REQUIRE(test::send_all(clients[0].get(), "first", 5));
        CHECK(test::recv_n(agent_end.get(), 5) == "first");
        // Nothing more was asked for: the other two have their tokens out.
        std::this_thread::sleep_for(50ms);
        size_t total = 0;
        for (const size_t k : f.refills()) {
            total += k;
        }
        CHECK(total == 3);
    }

    TEST_CASE("shard: a pool refills in one batch at its low-water mark, not per session") {
        Fixture f(1);
        f.agent(1, 8);
        const auto tokens = f.issue(0, 1, 8);  // the HELLO pool
        REQUIRE(tokens.size() == 8);
        std::vector<UniqueFd> agent_ends;
        for (const auto& t : tokens) {
            agent_ends.push_back(f.present(0, t));
        }
        REQUIRE(f.call(0, [](Shard& s, io::Worker&) { return s.idle_channels(); }) == 8);
        const uint16_t port = f.listen(0, "svc");
        std::vector<UniqueFd> clients;
        for (int i = 0; i < 4; ++i) {
            clients.push_back(test::connect_to("127.0.0.1", port));
            REQUIRE(eventually([&] {
                return f.call(0, [](Shard& s, io::Worker&) { return s.idle_channels(); }) ==
                       static_cast<size_t>(7 - i);
            }));
        }
        std::this_thread::sleep_for(50ms);
        // Four sessions, at most one refill, of several tokens.
        const auto r = f.refills();
        CHECK(r.size() <= 1);
        for (const size_t k : r) {
            CHECK(k >= 2);
        }
    }

    TEST_CASE("shard: an agent that leaves takes its idle channels and tokens along") {
        Fixture f(1);
        f.agent(1, 4);
        const auto used = f.grant(0, 1);
        const auto unused = f.grant(0, 1);
        UniqueFd idle = f.present(0, used);
        REQUIRE(f.call(0, [](Shard& s, io::Worker&) { return s.idle_channels(); }) == 1);
        f.call(0, [](Shard& s, io::Worker& w) { s.drop_agent(w, 1); });
        CHECK(closed_by_relay(idle.get()));
        CHECK(closed_by_relay(f.present(0, unused).get()));
    }

    TEST_CASE("shard: a draining agent serves only clients no other agent can take") {
        Fixture f(1);
        f.call(0, [](Shard& s, io::Worker& w) {
            s.add_agent(w, 1, "agent-1", 4);
            s.add_agent(w, 2, "agent-2", 4);
            auto both = std::make_shared<ServicePolicy>();
            both->name = "svc";
            both->agents = {1, 2};
            s.set_service(w, both);
            auto solo = std::make_shared<ServicePolicy>();
            solo->name = "solo";
            solo->agents = {1};
            s.set_service(w, solo);
        });
        const auto idle = [&f] {
            return f.call(0, [](Shard& s, io::Worker&) { return s.idle_channels(); });
        };
        UniqueFd a1 = f.present(0, f.grant(0, 1));
        UniqueFd a1b = f.present(0, f.grant(0, 1));
        UniqueFd a2 = f.present(0, f.grant(0, 2));
        REQUIRE(idle() == 3);
        f.call(0, [](Shard& s, io::Worker& w) { s.set_agent_draining(w, 1, true); });
        const uint16_t svc = f.listen(0, "svc");
        const uint16_t solo = f.listen(0, "solo");
        // Whichever agent the rotation starts with, agent 2 gets the client.
        UniqueFd c1 = test::connect_to("127.0.0.1", svc);
        REQUIRE(c1);
        CHECK(read_binding(a2.get()).service == "svc");
        CHECK(eventually([&] { return idle() == 2; }));
        // A second client waits for agent 2 rather than take agent 1's
        // idle channels.
        UniqueFd c2 = test::connect_to("127.0.0.1", svc);
        REQUIRE(c2);
        std::this_thread::sleep_for(50ms);
        CHECK(idle() == 2);
        // Only agent 1 serves "solo": draining, it still takes it.
        UniqueFd c3 = test::connect_to("127.0.0.1", solo);
        REQUIRE(c3);
        CHECK(eventually([&] { return idle() == 1; }));
        // Resumed, its last idle channel goes to the next client of "svc".
        f.call(0, [](Shard& s, io::Worker& w) { s.set_agent_draining(w, 1, false); });
        UniqueFd c4 = test::connect_to("127.0.0.1", svc);
        REQUIRE(c4);
        CHECK(eventually([&] { return idle() == 0; }));
    }

    TEST_CASE("shard: session ids differ across workers and count by the worker stride") {
        Fixture f(2);
        f.agent(1, 4);
        std::vector<uint64_t> ids;
        for (unsigned w = 0; w < 2; ++w) {
            const uint16_t port = f.listen(w, "svc");
            for (int i = 0; i < 2; ++i) {
                UniqueFd agent_end = f.present(w, f.grant(w, 1));
                UniqueFd client = test::connect_to("127.0.0.1", port);
                ids.push_back(read_binding(agent_end.get()).session_id);
            }
        }
        CHECK(ids == std::vector<uint64_t>{1000, 1002, 1001, 1003});
    }
}

// The operator interface's view of a shard: what report(), sessions(),
// close_session(), set_draining() and metrics() see of real sessions.
TEST_SUITE("relay.shard") {
    TEST_CASE("shard ops: open sessions are reported, listed, filtered and closed one by one") {
        Fixture f(1);
        f.agent(1, 4);
        const uint16_t port = f.listen(0, "svc");
        UniqueFd a_agent = f.present(0, f.grant(0, 1));
        UniqueFd b_agent = f.present(0, f.grant(0, 1));
        // One at a time: the oldest idle channel (a) takes the first client.
        UniqueFd a_client = test::connect_to("127.0.0.1", port);
        REQUIRE(a_client);
        const uint64_t id_a = read_binding(a_agent.get()).session_id;
        UniqueFd b_client = test::connect_to("127.0.0.1", port);
        REQUIRE(b_client);
        const uint64_t id_b = read_binding(b_agent.get()).session_id;
        test::set_timeouts(a_client.get(), 5s);
        test::set_timeouts(b_client.get(), 5s);
        REQUIRE(test::send_all(a_agent.get(), "hello", 5));
        REQUIRE(test::send_all(b_agent.get(), "hello", 5));
        std::string first_a = test::recv_n(a_client.get(), 5);
        std::string first_b = test::recv_n(b_client.get(), 5);
        REQUIRE(first_a == "hello");
        REQUIRE(first_b == "hello");

        const auto r = f.call(0, [](Shard& s, io::Worker& w) { return s.report(w); });
        CHECK(r.sessions == 2);
        CHECK(r.down_bytes == 10);
        CHECK(r.agent_sessions.at("agent-1") == 2);
        const auto addr = fmt::format("127.0.0.1:{}", port);
        REQUIRE(r.listeners.contains(addr));
        CHECK(r.listeners.at(addr).service == "svc");
        CHECK(r.listeners.at(addr).accepts == 2);
        CHECK(r.listeners.at(addr).sessions == 2);
        REQUIRE(r.pools.contains(1));
        CHECK(r.pools.at(1).agent == "agent-1");

        const auto rows =
            f.call(0, [](Shard& s, io::Worker& w) { return s.sessions(w, SessionFilter{}); });
        REQUIRE(rows.size() == 2);
        for (const auto& row : rows) {
            CHECK(row.service == "svc");
            CHECK(row.agent == "agent-1");
            CHECK(row.client.starts_with("127.0.0.1:"));
            CHECK(row.down_bytes == 5);
            CHECK(row.age_s >= 0);
        }
        SessionFilter other;
        other.client = *Cidr::parse("10.0.0.0/8");
        CHECK(f.call(0, [other](Shard& s, io::Worker& w) { return s.sessions(w, other); }).empty());
        SessionFilter svc;
        svc.service = "svc";
        CHECK(f.call(0, [svc](Shard& s, io::Worker& w) { return s.sessions(w, svc); }).size() == 2);

        CHECK(f.call(0, [&](Shard& s, io::Worker& w) { return s.close_session(w, id_a); }));
        // Exactly that one: its client is reset, the other one still moves bytes.
        char byte = 0;
        CHECK(::recv(a_client.get(), &byte, 1, 0) <= 0);
        REQUIRE(test::send_all(b_client.get(), "still", 5));
        CHECK(test::recv_n(b_agent.get(), 5) == "still");
        CHECK_FALSE(f.call(0, [&](Shard& s, io::Worker& w) { return s.close_session(w, id_a); }));
        const auto after = f.call(0, [](Shard& s, io::Worker& w) { return s.report(w); });
        CHECK(after.sessions == 1);
        // The closed session's bytes stay counted.
        CHECK(after.down_bytes == 10);
        CHECK(after.up_bytes == 5);
        const auto left =
            f.call(0, [](Shard& s, io::Worker& w) { return s.sessions(w, SessionFilter{}); });
        REQUIRE(left.size() == 1);
        CHECK(left[0].id == id_b);
    }

    TEST_CASE("shard ops: draining refuses new clients and counts them; resume serves again") {
        Fixture f(1);
        f.agent(1, 4);
        const uint16_t port = f.listen(0, "svc");
        UniqueFd held_agent = f.present(0, f.grant(0, 1));
        UniqueFd held = test::connect_to("127.0.0.1", port);
        REQUIRE(held);
        test::set_timeouts(held.get(), 5s);
        (void)read_binding(held_agent.get());

        f.call(0, [](Shard& s, io::Worker&) { s.set_draining(true); });
        UniqueFd refused = test::connect_to("127.0.0.1", port);
        REQUIRE(refused);
        test::set_timeouts(refused.get(), 5s);
        CHECK(closed_by_relay(refused.get()));
        // The established session goes on.
        REQUIRE(test::send_all(held.get(), "on", 2));
        CHECK(test::recv_n(held_agent.get(), 2) == "on");
        const auto r = f.call(0, [](Shard& s, io::Worker& w) { return s.report(w); });
        const auto addr = fmt::format("127.0.0.1:{}", port);
        CHECK(r.listeners.at(addr).refusals.at("draining") == 1);
        CHECK(r.sessions == 1);

        f.call(0, [](Shard& s, io::Worker&) { s.set_draining(false); });
        UniqueFd again_agent = f.present(0, f.grant(0, 1));
        UniqueFd again = test::connect_to("127.0.0.1", port);
        REQUIRE(again);
        CHECK(read_binding(again_agent.get()).service == "svc");
    }

    TEST_CASE("shard ops: metrics count sessions, bytes, refusals and idle channels") {
        Fixture f(1);
        f.agent(1, 4);
        const uint16_t port = f.listen(0, "svc");
        UniqueFd idle = f.present(0, f.grant(0, 1));
        UniqueFd agent_end = f.present(0, f.grant(0, 1));
        {
            UniqueFd client = test::connect_to("127.0.0.1", port);
            REQUIRE(client);
            test::set_timeouts(client.get(), 5s);
            // Whichever idle channel was taken carries the session.
            UniqueFd* carrier = nullptr;
            for (UniqueFd* c : {&idle, &agent_end}) {
                pollfd p{c->get(), POLLIN, 0};
                if (::poll(&p, 1, 2000) > 0) {
                    carrier = c;
                    break;
                }
            }
            REQUIRE(carrier != nullptr);
            (void)read_binding(carrier->get());
            REQUIRE(test::send_all(client.get(), "abc", 3));
            CHECK(test::recv_n(carrier->get(), 3) == "abc");
            const auto m = f.call(0, [](Shard& s, io::Worker& w) { return s.metrics(w); });
            const std::string text = obs::render(m);
            CHECK(text.find("sallyport_sessions_total{service=\"svc\",agent=\"agent-1\"} 1\n") !=
                  std::string::npos);
            CHECK(text.find("sallyport_sessions_open{service=\"svc\",agent=\"agent-1\"} 1\n") !=
                  std::string::npos);
            CHECK(text.find("sallyport_session_bytes_total{service=\"svc\",agent=\"agent-1\","
                            "direction=\"up\"} 3\n") != std::string::npos);
            CHECK(text.find("sallyport_pool_idle_channels{agent=\"agent-1\"} 1\n") !=
                  std::string::npos);
            CHECK(text.find("sallyport_session_setup_seconds_count{service=\"svc\"} 1\n") !=
                  std::string::npos);
            ::shutdown(client.get(), SHUT_WR);
            ::shutdown(carrier->get(), SHUT_WR);
            char b = 0;
            CHECK(::recv(client.get(), &b, 1, 0) == 0);
        }
        REQUIRE(eventually([&] {
            return f.call(0, [](Shard& s, io::Worker& w) { return s.report(w).sessions; }) == 0;
        }));
        f.call(0, [](Shard& s, io::Worker&) { s.set_draining(true); });
        UniqueFd refused = test::connect_to("127.0.0.1", port);
        REQUIRE(refused);
        test::set_timeouts(refused.get(), 5s);
        CHECK(closed_by_relay(refused.get()));
        const std::string text =
            obs::render(f.call(0, [](Shard& s, io::Worker& w) { return s.metrics(w); }));
        CHECK(text.find("sallyport_sessions_open{service=\"svc\",agent=\"agent-1\"} 0\n") !=
              std::string::npos);
        CHECK(text.find("sallyport_session_bytes_total{service=\"svc\",agent=\"agent-1\","
                        "direction=\"up\"} 3\n") != std::string::npos);
        CHECK(text.find("sallyport_session_duration_seconds_count{service=\"svc\"} 1\n") !=
              std::string::npos);
        CHECK(text.find("sallyport_client_rejections_total{service=\"svc\",reason=\"draining\"} "
                        "1\n") != std::string::npos);
        CHECK(text.find("sallyport_client_accepts_total{service=\"svc\"} 2\n") !=
              std::string::npos);
    }
}

namespace {

// Runs one outbound job on worker `at` and waits for its outcome; counts
// the slot releases in `released`.
OutboundOutcome outbound(Fixture& f, unsigned at, uint64_t agent,
                         std::vector<SocketAddress> addresses,
                         const std::shared_ptr<std::atomic<int>>& released) {
    auto prom = std::make_shared<std::promise<OutboundOutcome>>();
    auto fut = prom->get_future();
    OutboundJob job;
    job.request = 9;
    job.agent = agent;
    job.agent_name = "agent-" + std::to_string(agent);
    job.destination = "partner:1";
    job.addresses = std::move(addresses);
    job.connect_timeout = 2s;
    job.token_lifetime = 5s;
    job.report = [prom](OutboundOutcome o) { prom->set_value(std::move(o)); };
    job.release = [released] { ++*released; };
    auto j = std::make_shared<OutboundJob>(std::move(job));
    f.call(at, [j](Shard& s, io::Worker& w) { s.connect_outbound(w, std::move(*j)); });
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    return fut.get();
}

}  // namespace

TEST_SUITE("relay.shard.outbound") {
    TEST_CASE("outbound: the first address that accepts wins; its channel is spliced with it") {
        Fixture f(2);
        f.agent(1, 0);
        auto partner = io::listen_tcp(kLoopback, false, 8);
        REQUIRE(partner);
        const auto paddr = *io::local_address(partner->get());
        const uint16_t dead = test::free_port();
        const SocketAddress refused(*IpAddress::parse("127.0.0.1"), dead);
        auto released = std::make_shared<std::atomic<int>>(0);
        const auto o = outbound(f, 1, 1, {refused, paddr}, released);
        REQUIRE(o.status == control::OutboundStatus::Ok);
        CHECK(o.request == 9);
        CHECK(o.resolved == paddr.to_string());
        CHECK(token_owner(o.token) == 1);
        UniqueFd server(::accept4(partner->get(), nullptr, nullptr, SOCK_CLOEXEC));
        REQUIRE(server);
        test::set_timeouts(server.get(), 5s);
        // Presented on the other worker: routed to the one holding the socket.
        UniqueFd agent_end = f.present(0, o.token);
        const auto b = read_binding(agent_end.get());
        CHECK(b.service.empty());
        CHECK(b.client_addr == paddr.to_string());
        CHECK(b.listen_addr.rfind("127.0.0.1:", 0) == 0);
        CHECK(b.session_id % 2 == 1);  // worker 1's sequence
        REQUIRE(test::send_all(agent_end.get(), "up", 2));
        CHECK(test::recv_n(server.get(), 2) == "up");
        REQUIRE(test::send_all(server.get(), "down", 4));
        CHECK(test::recv_n(agent_end.get(), 4) == "down");
        CHECK(*released == 0);
        server = UniqueFd();
        agent_end = UniqueFd();
        CHECK(eventually([&] { return *released == 1; }));
        // Single use.
        UniqueFd again = f.present(1, o.token);
        CHECK(closed_by_relay(again.get()));
    }

    TEST_CASE("outbound: refused, gone agent and draining relay are reported, not connected") {
        Fixture f(1);
        f.agent(1, 0);
        auto released = std::make_shared<std::atomic<int>>(0);
        const SocketAddress refused(*IpAddress::parse("127.0.0.1"), test::free_port());
        auto o = outbound(f, 0, 1, {refused}, released);
        CHECK(o.status == control::OutboundStatus::ConnectFailed);
        CHECK(o.error == ECONNREFUSED);
        CHECK(o.resolved == refused.to_string());
        auto partner = io::listen_tcp(kLoopback, false, 8);
        REQUIRE(partner);
        const auto paddr = *io::local_address(partner->get());
        o = outbound(f, 0, 2, {paddr}, released);  // agent 2 is not Ready here
        CHECK(o.status == control::OutboundStatus::ConnectFailed);
        CHECK(o.error == ECONNABORTED);
        f.call(0, [](Shard& s, io::Worker&) { s.set_draining(true); });
        o = outbound(f, 0, 1, {paddr}, released);
        CHECK(o.status == control::OutboundStatus::Limit);
        CHECK(*released == 0);  // nothing was granted
    }

    TEST_CASE("outbound: an agent that leaves voids its tokens and frees their slots") {
        Fixture f(1);
        f.agent(1, 0);
        auto partner = io::listen_tcp(kLoopback, false, 8);
        REQUIRE(partner);
        const auto paddr = *io::local_address(partner->get());
        auto released = std::make_shared<std::atomic<int>>(0);
        const auto o = outbound(f, 0, 1, {paddr}, released);
        REQUIRE(o.status == control::OutboundStatus::Ok);
        UniqueFd server(::accept4(partner->get(), nullptr, nullptr, SOCK_CLOEXEC));
        REQUIRE(server);
        test::set_timeouts(server.get(), 5s);
        f.call(0, [](Shard& s, io::Worker& w) { s.drop_agent(w, 1); });
        CHECK(*released == 1);
        CHECK(closed_by_relay(server.get()));  // the outbound socket is closed
        UniqueFd late = f.present(0, o.token);
        CHECK(closed_by_relay(late.get()));
    }
}
