// SPDX-License-Identifier: Apache-2.0
// Who gets in (issue 6): client allow/deny rules, the relay's [limits], the
// refusal events and their log limiting, and the audit trail fields shared by
// relay and agent. Clients use distinct 127.0.0.x sources (and ::1) so that
// per-address rules and per-address limits can be told apart.
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

using Clock = std::chrono::steady_clock;

// The stderr lines of event `name` ("TIME level NAME K=V ... message").
std::vector<std::string> events(const std::string& log, const std::string& name) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < log.size()) {
        size_t end = log.find('\n', pos);
        if (end == std::string::npos) {
            end = log.size();
        }
        const std::string line = log.substr(pos, end - pos);
        if (line.find(" " + name + " ") != std::string::npos) {
            out.push_back(line);
        }
        pos = end + 1;
    }
    return out;
}

std::vector<std::string> with(const std::vector<std::string>& lines, const std::string& needle) {
    std::vector<std::string> out;
    for (const auto& l : lines) {
        if (l.find(needle) != std::string::npos) {
            out.push_back(l);
        }
    }
    return out;
}

// The value of KEY=... in a line (unquoted values only; ours never need quotes).
std::string field(const std::string& line, const std::string& key) {
    const auto at = line.find(" " + key + "=");
    if (at == std::string::npos) {
        return "<absent>";
    }
    const size_t from = at + key.size() + 2;
    const size_t to = line.find(' ', from);
    return line.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

std::string svc(const std::string& name, const std::string& listen, uint16_t backend,
                const std::string& extra = "") {
    return Deployment::service(name, listen, fmt::format("127.0.0.1:{}", backend), extra);
}

// A relay with `limits` in [limits] and one agent serving `services`.
struct Setup {
    Deployment d;

    explicit Setup(const std::string& services, size_t listeners, const std::string& limits = "",
                   unsigned pool = 4) {
        d.make_keys({"agent1"});
        d.limits_extra = limits;
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        d.start_agent(services, pool);
        REQUIRE(d.relay.wait_for_output("listener-open", 10s, listeners));
    }
};

// Through an Echo backend from `source`: true when the payload comes back.
bool served(const char* host, uint16_t port, const char* source) {
    auto fd = connect_to(host, port, 2s, source);
    if (!fd) {
        return false;
    }
    set_timeouts(fd.get(), 5s);
    const std::string payload = fmt::format("hello from {}", source);
    if (!send_all(fd.get(), payload.data(), payload.size())) {
        return false;
    }
    ::shutdown(fd.get(), SHUT_WR);
    return recv_all(fd.get()) == payload;
}

// True when the relay accepts and closes the connection at once, without a
// byte: the kernel completes the handshake, so a refusal shows as EOF/reset.
bool refused_at_once(const char* host, uint16_t port, const char* source) {
    auto fd = connect_to(host, port, 2s, source);
    if (!fd) {
        return false;
    }
    set_timeouts(fd.get(), 3s);
    char b = 0;
    const ssize_t n = ::recv(fd.get(), &b, 1, 0);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
}

// An Echo session from `source` proven paired end to end, kept open.
sp::UniqueFd hold(const char* host, uint16_t port, const char* source) {
    auto fd = connect_to(host, port, 2s, source);
    if (!fd) {
        return {};
    }
    set_timeouts(fd.get(), 5s);
    if (!send_all(fd.get(), "x", 1) || recv_n(fd.get(), 1) != "x") {
        return {};
    }
    return fd;
}

uint16_t local_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

void abort_close(sp::UniqueFd& fd) {
    const linger lg{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    fd.reset();
}

}  // namespace

TEST_SUITE("integration.admission") {
    TEST_CASE("admission: allow_clients and deny_clients per service, deny wins, IPv4") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t ruled = free_port();
        const uint16_t open = free_port();
        Setup s(svc("ruled", fmt::format("127.0.0.1:{}", ruled), echo.port(),
                    "allow_clients = [\"127.0.0.0/29\"]\ndeny_clients = [\"127.0.0.3/32\"]\n") +
                    svc("open", fmt::format("127.0.0.1:{}", open), echo.port()),
                2);
        CHECK(served("127.0.0.1", ruled, "127.0.0.2"));
        const int backend_before = echo.accepted();
        CHECK(refused_at_once("127.0.0.1", ruled, "127.0.0.3"));  // allowed and denied
        CHECK(refused_at_once("127.0.0.1", ruled, "127.0.0.9"));  // outside allow
        // Refused before any data channel is used: the backend never sees them.
        CHECK(echo.accepted() == backend_before);
        // The rules are the service's own: the other service takes everyone.
        CHECK(served("127.0.0.1", open, "127.0.0.3"));
        CHECK(served("127.0.0.1", open, "127.0.0.9"));
        REQUIRE(s.d.relay.wait_for_output("client-rejected", 5s, 2));
        const auto rej = events(s.d.relay.output(), "client-rejected");
        REQUIRE(rej.size() == 2);
        CHECK(field(rej[0], "CLIENT_ADDR") == "127.0.0.3");
        CHECK(field(rej[1], "CLIENT_ADDR") == "127.0.0.9");
        for (const auto& l : rej) {
            CHECK(field(l, "REASON") == "denied");
            CHECK(field(l, "SERVICE") == "ruled");
            CHECK(field(l, "LISTEN_ADDR") == fmt::format("127.0.0.1:{}", ruled));
            CHECK(std::stoi(field(l, "CLIENT_PORT")) > 0);
        }
    }

    TEST_CASE("admission: IPv6 clients on a [::1] listener follow the rules too") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t allowed = free_port("::1");
        const uint16_t denied = free_port("::1");
        const uint16_t v4only = free_port();
        Setup s(svc("v6-allowed", fmt::format("[::1]:{}", allowed), echo.port(),
                    "allow_clients = [\"::1/128\"]\n") +
                    svc("v6-denied", fmt::format("[::1]:{}", denied), echo.port(),
                        "allow_clients = [\"::/0\"]\ndeny_clients = [\"::1/128\"]\n") +
                    svc("v6-rules-only", fmt::format("127.0.0.1:{}", v4only), echo.port(),
                        "allow_clients = [\"::1/128\"]\n"),
                3);
        CHECK(served("::1", allowed, "::1"));
        CHECK(refused_at_once("::1", denied, "::1"));
        // A v4 client matches no v6 rule: not in the allow list.
        CHECK(refused_at_once("127.0.0.1", v4only, "127.0.0.4"));
        REQUIRE(s.d.relay.wait_for_output("client-rejected", 5s, 2));
        const auto rej = events(s.d.relay.output(), "client-rejected");
        REQUIRE(rej.size() == 2);
        CHECK(field(rej[0], "CLIENT_ADDR") == "::1");  // no brackets, no port
        CHECK(field(rej[0], "SERVICE") == "v6-denied");
        CHECK(field(rej[0], "LISTEN_ADDR") == fmt::format("[::1]:{}", denied));
        CHECK(field(rej[0], "REASON") == "denied");
        CHECK(field(rej[1], "CLIENT_ADDR") == "127.0.0.4");
        CHECK(field(rej[1], "REASON") == "denied");
        REQUIRE(s.d.relay.wait_for_output("session-close", 5s));
        const auto closes = events(s.d.relay.output(), "session-close");
        CHECK(field(closes[0], "CLIENT_ADDR") == "::1");
    }

    TEST_CASE("admission: the relay's max_sessions caps all services together") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t a = free_port();
        const uint16_t b = free_port();
        Setup s(svc("a", fmt::format("127.0.0.1:{}", a), echo.port()) +
                    svc("b", fmt::format("127.0.0.1:{}", b), echo.port()),
                2, "max_sessions = 2\n");
        auto h1 = hold("127.0.0.1", a, "127.0.0.2");
        auto h2 = hold("127.0.0.1", b, "127.0.0.3");
        REQUIRE(h1);
        REQUIRE(h2);
        CHECK(refused_at_once("127.0.0.1", a, "127.0.0.4"));
        CHECK(refused_at_once("127.0.0.1", b, "127.0.0.4"));
        REQUIRE(s.d.relay.wait_for_output("REASON=limit", 5s, 2));
        h1.reset();  // one slot comes back when its session ends
        REQUIRE(s.d.relay.wait_for_output("session-close", 5s));
        CHECK(served("127.0.0.1", b, "127.0.0.4"));
    }

    TEST_CASE("admission: a service's max_sessions caps only that service") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t capped = free_port();
        const uint16_t other = free_port();
        Setup s(
            svc("capped", fmt::format("127.0.0.1:{}", capped), echo.port(), "max_sessions = 1\n") +
                svc("other", fmt::format("127.0.0.1:{}", other), echo.port()),
            2);
        auto h = hold("127.0.0.1", capped, "127.0.0.2");
        REQUIRE(h);
        CHECK(refused_at_once("127.0.0.1", capped, "127.0.0.3"));
        CHECK(served("127.0.0.1", other, "127.0.0.3"));
        REQUIRE(s.d.relay.wait_for_output("client-rejected", 5s));
        const auto rej = events(s.d.relay.output(), "client-rejected");
        REQUIRE(rej.size() == 1);
        CHECK(field(rej[0], "REASON") == "limit");
        CHECK(field(rej[0], "SERVICE") == "capped");
        h.reset();
        REQUIRE(s.d.relay.wait_for_output("session-close", 5s, 2));
        CHECK(served("127.0.0.1", capped, "127.0.0.3"));
    }

    TEST_CASE("admission: max_sessions_per_client counts each client address apart") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t port = free_port();
        Setup s(svc("svc", fmt::format("127.0.0.1:{}", port), echo.port()), 1,
                "max_sessions_per_client = 2\n");
        auto h1 = hold("127.0.0.1", port, "127.0.0.2");
        auto h2 = hold("127.0.0.1", port, "127.0.0.2");
        REQUIRE(h1);
        REQUIRE(h2);
        CHECK(refused_at_once("127.0.0.1", port, "127.0.0.2"));
        CHECK(served("127.0.0.1", port, "127.0.0.3"));
        auto h3 = hold("127.0.0.1", port, "127.0.0.3");
        CHECK(h3);
        const auto rej = events(s.d.relay.output(), "client-rejected");
        REQUIRE(rej.size() == 1);
        CHECK(field(rej[0], "REASON") == "limit");
        CHECK(field(rej[0], "CLIENT_ADDR") == "127.0.0.2");
        h2.reset();
        REQUIRE(s.d.relay.wait_for_output("session-close", 5s, 2));
        CHECK(served("127.0.0.1", port, "127.0.0.2"));
    }

    TEST_CASE("admission: max_new_sessions_per_client_per_s is a token bucket per address") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t port = free_port();
        Setup s(svc("svc", fmt::format("127.0.0.1:{}", port), echo.port()), 1,
                "max_new_sessions_per_client_per_s = 4\n");
        const auto t0 = Clock::now();
        int ok = 0;
        int no = 0;
        for (int i = 0; i < 12; ++i) {
            (served("127.0.0.1", port, "127.0.0.2") ? ok : no)++;
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        MESSAGE(fmt::format("12 attempts in {:.3f} s: {} served, {} refused", secs, ok, no));
        CHECK(ok >= 4);  // the bucket starts full
        CHECK(ok <= 4 + static_cast<int>(secs * 4) + 1);
        CHECK(no > 0);
        // Another address has its own bucket.
        CHECK(served("127.0.0.1", port, "127.0.0.3"));
        REQUIRE(s.d.relay.wait_for_output("client-rejected", 5s));
        for (const auto& l : events(s.d.relay.output(), "client-rejected")) {
            CHECK(field(l, "REASON") == "rate");
            CHECK(field(l, "CLIENT_ADDR") == "127.0.0.2");
        }
        // The bucket refills: after a second the address is served again.
        std::this_thread::sleep_for(1100ms);
        CHECK(served("127.0.0.1", port, "127.0.0.2"));
    }

    TEST_CASE("admission: a client with no data channel is closed after pending_timeout_ms") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t port = free_port();
        // pool = 0: every session needs a channel dialed on request; a
        // stopped agent dials none. One session per client proves the
        // timed-out client's slot is given back.
        Setup s(svc("svc", fmt::format("127.0.0.1:{}", port), echo.port()), 1,
                "pending_timeout_ms = 600\nmax_sessions_per_client = 1\n", 0);
        REQUIRE(served("127.0.0.1", port, "127.0.0.2"));
        s.d.agent.signal(SIGSTOP);
        const auto t0 = Clock::now();
        const bool closed = refused_at_once("127.0.0.1", port, "127.0.0.2");
        const auto waited = Clock::now() - t0;
        s.d.agent.signal(SIGCONT);
        CHECK(closed);
        CHECK(waited >= 500ms);  // it did wait for a channel first
        REQUIRE(s.d.relay.wait_for_output("REASON=pending-timeout", 5s));
        const auto rej = events(s.d.relay.output(), "client-rejected");
        REQUIRE(rej.size() == 1);
        CHECK(field(rej[0], "CLIENT_ADDR") == "127.0.0.2");
        CHECK(field(rej[0], "SERVICE") == "svc");
        CHECK(served("127.0.0.1", port, "127.0.0.2"));
    }

    TEST_CASE("admission: idle_timeout_s closes a silent session and spares a busy one") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t port = free_port();
        Setup s(svc("svc", fmt::format("127.0.0.1:{}", port), echo.port()), 1,
                "idle_timeout_s = 1\n");
        auto silent = hold("127.0.0.1", port, "127.0.0.2");
        auto busy = hold("127.0.0.1", port, "127.0.0.3");
        REQUIRE(silent);
        REQUIRE(busy);
        std::atomic<bool> busy_ok{true};
        std::thread talker([&] {
            for (int i = 0; i < 10; ++i) {  // 3 s of a byte every 300 ms
                std::this_thread::sleep_for(300ms);
                if (!send_all(busy.get(), "b", 1) || recv_n(busy.get(), 1) != "b") {
                    busy_ok = false;
                    return;
                }
            }
        });
        const auto t0 = Clock::now();
        char b = 0;
        const ssize_t n = ::recv(silent.get(), &b, 1, 0);  // 5 s socket timeout
        const int err = errno;
        const auto waited = Clock::now() - t0;
        talker.join();
        // The relay ends an idle session abortively (RST to both ends), so
        // each side knows it was cut rather than finished.
        CHECK(n < 0);
        CHECK(err == ECONNRESET);
        CHECK(waited >= 900ms);
        CHECK(busy_ok.load());
        REQUIRE(s.d.relay.wait_for_output("REASON=idle-timeout", 5s));
        const auto closes = with(events(s.d.relay.output(), "session-close"), "idle-timeout");
        REQUIRE(closes.size() == 1);
        CHECK(field(closes[0], "CLIENT_ADDR") == "127.0.0.2");
    }

    TEST_CASE("admission: session events carry one SESSION_ID and the same fields at both ends") {
        TestServer source(TestServer::Mode::Source);
        const uint16_t port = free_port();
        Setup s(svc("audit", fmt::format("127.0.0.1:{}", port), source.port()), 1);
        auto fd = connect_to("127.0.0.1", port, 2s, "127.0.0.5");
        REQUIRE(fd);
        const uint16_t cport = local_port(fd.get());
        constexpr uint64_t kDown = 5000;
        std::string hdr(8, '\0');
        for (int i = 0; i < 8; ++i) {
            hdr[static_cast<size_t>(i)] = static_cast<char>((kDown >> (56 - 8 * i)) & 0xff);
        }
        REQUIRE(send_all(fd.get(), hdr.data(), hdr.size()));
        CHECK(recv_n(fd.get(), kDown).size() == kDown);
        std::this_thread::sleep_for(300ms);  // a duration worth measuring
        ::shutdown(fd.get(), SHUT_WR);
        CHECK(recv_all(fd.get()).empty());
        fd.reset();
        const std::string cp = fmt::format("CLIENT_PORT={}", cport);
        REQUIRE(s.d.relay.wait_for_output("session-close", 5s));
        REQUIRE(s.d.agent.wait_for_output("session-close", 5s));
        const auto r_open = with(events(s.d.relay.output(), "session-open"), cp);
        const auto r_close = with(events(s.d.relay.output(), "session-close"), cp);
        const auto a_open = with(events(s.d.agent.output(), "session-open"), cp);
        const auto a_close = with(events(s.d.agent.output(), "session-close"), cp);
        REQUIRE(r_open.size() == 1);
        REQUIRE(r_close.size() == 1);
        REQUIRE(a_open.size() == 1);
        REQUIRE(a_close.size() == 1);
        const std::string sid = field(r_open[0], "SESSION_ID");
        CHECK(sid.size() == 16);
        CHECK(sid.find_first_not_of("0123456789abcdef") == std::string::npos);
        for (const auto* l : {&r_open[0], &r_close[0], &a_open[0], &a_close[0]}) {
            CHECK(field(*l, "SESSION_ID") == sid);
            CHECK(field(*l, "SERVICE") == "audit");
            CHECK(field(*l, "CLIENT_ADDR") == "127.0.0.5");
            CHECK(field(*l, "CLIENT_PORT") == std::to_string(cport));
        }
        const std::string listen = fmt::format("127.0.0.1:{}", port);
        const std::string backend = fmt::format("127.0.0.1:{}", source.port());
        const std::string relay_addr = fmt::format("127.0.0.1:{}", s.d.control_port);
        for (const auto* l : {&r_open[0], &r_close[0], &a_open[0], &a_close[0]}) {
            CHECK(field(*l, "LISTEN_ADDR") == listen);
        }
        for (const auto* l : {&r_open[0], &r_close[0]}) {
            CHECK(field(*l, "AGENT") == "agent1");
        }
        for (const auto* l : {&a_open[0], &a_close[0]}) {
            CHECK(field(*l, "BACKEND_ADDR") == backend);
            CHECK(field(*l, "RELAY_ADDR") == relay_addr);
        }
        for (const auto* l : {&r_close[0], &a_close[0]}) {
            CHECK(field(*l, "BYTES_UP") == "8");
            CHECK(field(*l, "BYTES_DOWN") == std::to_string(kDown));
            CHECK(std::stoi(field(*l, "DURATION_MS")) >= 250);
            CHECK(field(*l, "REASON") != "<absent>");
        }
    }

    TEST_CASE("admission: a flood from one address is held to its limits, others are served") {
        TestServer banner(TestServer::Mode::Banner);
        const uint16_t port = free_port();
        constexpr int kRate = 50;
        Setup s(svc("svc", fmt::format("127.0.0.1:{}", port), banner.port()), 1,
                fmt::format("max_sessions_per_client = 4\n"
                            "max_new_sessions_per_client_per_s = {}\n",
                            kRate));
        std::atomic<bool> stop{false};
        std::atomic<int> good{0};
        std::atomic<int> bad{0};
        // The well-behaved client: banner, then 256 KiB echoed and hashed.
        std::thread normal([&] {
            std::vector<char> buf(256 << 10);
            for (int i = 0; i < 200 && !stop.load(); ++i) {
                auto fd = connect_to("127.0.0.1", port, 2s, "127.0.0.3");
                if (fd) {
                    set_timeouts(fd.get(), 5s);
                }
                std::string line;  // "BANNER <n>\r\n", then an echo
                while (fd && line.find('\n') == std::string::npos && line.size() < 32) {
                    const auto c = recv_n(fd.get(), 1);
                    if (c.empty()) {
                        break;
                    }
                    line += c;
                }
                fill_pattern(static_cast<uint64_t>(i), 0, buf.data(), buf.size());
                bool ok = line.rfind("BANNER ", 0) == 0 && line.back() == '\n';
                if (ok) {
                    std::thread w([&] {
                        (void)send_all(fd.get(), buf.data(), buf.size());
                        ::shutdown(fd.get(), SHUT_WR);
                    });
                    const auto got = recv_all(fd.get());
                    w.join();
                    ok = sha256_hex(got) == sha256_hex(std::string(buf.data(), buf.size()));
                }
                (ok ? good : bad)++;
                std::this_thread::sleep_for(50ms);
            }
        });
        std::atomic<int> attempts{0};
        std::atomic<int> admitted{0};
        std::atomic<int> refused{0};
        std::atomic<int> failed{0};
        const auto t0 = Clock::now();
        std::vector<std::thread> flood;
        // 4 threads x 750 connections, paced to about 1,200 a second so the
        // flood spans several of the log limiter's 1 s windows.
        for (int t = 0; t < 4; ++t) {
            flood.emplace_back([&] {
                for (int i = 0; i < 750; ++i) {
                    const auto due = t0 + i * 3300us;
                    if (Clock::now() - t0 > 15s) {
                        return;
                    }
                    std::this_thread::sleep_until(due);
                    ++attempts;
                    auto fd = connect_to("127.0.0.1", port, 2s, "127.0.0.2");
                    if (!fd) {
                        ++failed;
                        continue;
                    }
                    set_timeouts(fd.get(), 5s);
                    const auto got = recv_n(fd.get(), 7);
                    (got == "BANNER " ? admitted : got.empty() ? refused : failed)++;
                    abort_close(fd);  // no TIME_WAIT pile-up on our side
                }
            });
        }
        for (auto& t : flood) {
            t.join();
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        stop = true;
        normal.join();
        std::this_thread::sleep_for(300ms);  // let the relay write its last lines
        const auto rej = with(events(s.d.relay.output(), "client-rejected"), "=127.0.0.2 ");
        int64_t summarised = 0;
        for (const auto& l : rej) {
            if (const auto v = field(l, "SUPPRESSED"); v != "<absent>") {
                summarised += std::stoll(v);
            }
        }
        MESSAGE(
            fmt::format("flood: {} connections from 127.0.0.2 in {:.2f} s: {} admitted, "
                        "{} refused, {} failed; {} client-rejected lines logged, {} "
                        "summarised as not logged; 127.0.0.3: {} served, {} failed",
                        attempts.load(), secs, admitted.load(), refused.load(), failed.load(),
                        rej.size(), summarised, good.load(), bad.load()));
        CHECK(attempts.load() >= 3000);
        CHECK(failed.load() == 0);
        // The bucket: full at the start, then kRate per second.
        CHECK(admitted.load() <= kRate + static_cast<int>(secs * kRate) + 5);
        CHECK(refused.load() >= attempts.load() - admitted.load());
        CHECK(good.load() >= 5);
        CHECK(bad.load() == 0);
        // Refusals are logged at most a handful per second per worker, and
        // what was held back is summarised.
        CHECK(rej.size() * 20 < static_cast<size_t>(refused.load()));
        CHECK(with(rej, "not logged").size() > 0);
        CHECK(static_cast<int64_t>(rej.size()) + summarised <= refused.load());
        CHECK(with(events(s.d.relay.output(), "client-rejected"), "=127.0.0.3 ").empty());
    }

    TEST_CASE("admission: refusals on the control port are logged sparingly and summarised") {
        TestServer echo(TestServer::Mode::Echo);
        Deployment d;
        d.make_keys({"agent1"});
        d.start_relay("allow_agents = [\"127.0.0.1/32\"]\n");
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        d.start_agent(svc("svc", fmt::format("127.0.0.1:{}", port), echo.port()));
        REQUIRE(d.relay.wait_for_output("listener-open", 10s));
        int closed = 0;
        for (int i = 0; i < 300; ++i) {
            if (refused_at_once("127.0.0.1", d.control_port, "127.0.0.9")) {
                ++closed;
            }
        }
        CHECK(closed == 300);
        std::this_thread::sleep_for(1100ms);  // a new log window
        CHECK(refused_at_once("127.0.0.1", d.control_port, "127.0.0.9"));
        REQUIRE(d.relay.wait_for_output("not logged", 5s));
        const auto rej = with(events(d.relay.output(), "agent-rejected"), "=127.0.0.9 ");
        MESSAGE(
            fmt::format("301 refused control connections, {} agent-rejected lines", rej.size()));
        CHECK(rej.size() < 30);
        const auto summary = with(rej, "not logged");
        REQUIRE(summary.size() >= 1);
        CHECK(std::stoi(field(summary.back(), "SUPPRESSED")) > 0);
        CHECK(field(summary.back(), "REASON") == "not-allowed");
        CHECK(served("127.0.0.1", port, "127.0.0.1"));
    }

    TEST_CASE("admission: an agent cannot open a listener outside the relay's allow_listen") {
        // The fixture allows 127.0.0.1:1024-65535 and [::1]:1024-65535 only.
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t ok = free_port();
        const uint16_t other_host = free_port("127.0.0.2");
        Deployment d;
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        d.start_agent(svc("low", "127.0.0.1:1000", echo.port()) +
                      svc("elsewhere", fmt::format("127.0.0.2:{}", other_host), echo.port()) +
                      svc("fine", fmt::format("127.0.0.1:{}", ok), echo.port()));
        REQUIRE(d.relay.wait_for_output("config-applied", 10s));
        const auto rej = events(d.relay.output(), "config-rejected");
        REQUIRE(rej.size() == 2);
        CHECK(field(rej[0], "SERVICE") == "low");
        CHECK(field(rej[1], "SERVICE") == "elsewhere");
        for (const auto& l : rej) {
            CHECK(field(l, "REASON") == "not-allowed");
        }
        CHECK(refused("127.0.0.1", 1000));
        CHECK(refused("127.0.0.2", other_host));
        CHECK(served("127.0.0.1", ok, "127.0.0.2"));
    }

    TEST_CASE("admission: client rules changed by an agent reload apply at the relay") {
        TestServer echo(TestServer::Mode::Echo);
        const uint16_t port = free_port();
        Setup s(svc("svc", fmt::format("127.0.0.1:{}", port), echo.port()), 1);
        CHECK(served("127.0.0.1", port, "127.0.0.3"));
        auto kept = hold("127.0.0.1", port, "127.0.0.3");
        REQUIRE(kept);
        // Same listen address, tighter rules: the listener stays, the rules change.
        s.d.write_agent_config("agent1", svc("svc", fmt::format("127.0.0.1:{}", port), echo.port(),
                                             "deny_clients = [\"127.0.0.3\"]\n"));
        s.d.agent.signal(SIGHUP);
        REQUIRE(s.d.relay.wait_for_output("config-applied", 10s, 2));
        std::this_thread::sleep_for(200ms);  // the workers take the new policy
        CHECK(refused_at_once("127.0.0.1", port, "127.0.0.3"));
        CHECK(served("127.0.0.1", port, "127.0.0.2"));
        // The session admitted under the old rules carries on.
        CHECK(send_all(kept.get(), "k", 1));
        CHECK(recv_n(kept.get(), 1) == "k");
        CHECK(s.d.relay.output().find("listener-closed") == std::string::npos);
    }

    TEST_CASE("admission: a thousand silent control connections do not keep a real agent out") {
        TestServer echo(TestServer::Mode::Echo);
        Deployment d;
        d.make_keys({"agent1"});
        d.limits_extra = "handshake_timeout_ms = 1000\n";
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        std::vector<sp::UniqueFd> silent;
        for (int i = 0; i < 1000; ++i) {
            if (auto fd = connect_to("127.0.0.1", d.control_port, 2s, "127.0.0.3"); fd) {
                silent.push_back(std::move(fd));
            }
        }
        CHECK(silent.size() == 1000);
        const uint16_t port = free_port();
        d.start_agent(svc("svc", fmt::format("127.0.0.1:{}", port), echo.port()));
        REQUIRE(d.relay.wait_for_output("listener-open", 10s));
        CHECK(served("127.0.0.1", port, "127.0.0.2"));
        // The silent ones are cut after handshake_timeout_ms, logged sparingly.
        char b = 0;
        set_timeouts(silent.back().get(), 5s);
        CHECK(::recv(silent.back().get(), &b, 1, 0) == 0);
        REQUIRE(d.relay.wait_for_output("REASON=handshake-timeout", 5s));
        const auto rej = with(events(d.relay.output(), "agent-rejected"), "=127.0.0.3 ");
        MESSAGE(
            fmt::format("1000 silent control connections: {} agent-rejected lines", rej.size()));
        CHECK(rej.size() < 50);
    }
}
