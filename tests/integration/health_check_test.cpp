// SPDX-License-Identifier: Apache-2.0
// Active backend health checks against the real relay and agent: a service
// with two backends checked every 200 ms; one backend stops listening, the
// agent logs backend-down and every new session goes to the other without
// trying it first; it listens again, the agent logs backend-up and new
// sessions reach it again. The services command and the
// sallyport_agent_backend_up gauge follow. Every wait is bounded; every
// process is stopped by its PID.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "admin/client.hpp"
#include "admin/protocol.hpp"
#include "fixture.hpp"

using namespace sp;
using namespace sp::test;
using namespace std::chrono_literals;

namespace {

/// A backend on a fixed port that can stop listening and start again: each
/// connection gets the server's name and a close.
class NamedServer final {
public:
    NamedServer(std::string name, uint16_t port) : name_(std::move(name)), port_(port) {}
    ~NamedServer() { stop(); }
    NamedServer(const NamedServer&) = delete;
    NamedServer& operator=(const NamedServer&) = delete;

    bool start() {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port_);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(fd.get(), 64) != 0) {
            return false;
        }
        listener_ = std::move(fd);
        stop_ = false;
        thread_ = std::thread([this] { serve(); });
        return true;
    }

    /// Closes the listener: connects to the port are refused from now on.
    void stop() {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
        listener_.reset();
    }

private:
    void serve() {
        while (!stop_) {
            pollfd p{listener_.get(), POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) {
                continue;
            }
            UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (c) {
                const std::string line = name_ + "\n";
                (void)::send(c.get(), line.data(), line.size(), MSG_NOSIGNAL);
            }
        }
    }

    std::string name_;
    uint16_t port_;
    UniqueFd listener_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// The name of the backend one session reached ("" when none did).
std::string session(uint16_t port) {
    auto fd = connect_to("127.0.0.1", port);
    if (!fd) {
        return "";
    }
    set_timeouts(fd.get(), 10s);
    ::shutdown(fd.get(), SHUT_WR);
    std::string got = recv_all(fd.get(), 64);
    if (!got.empty() && got.back() == '\n') {
        got.pop_back();
    }
    return got;
}

size_t count(const std::string& hay, const std::string& needle) {
    size_t n = 0;
    for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) {
        ++n;
    }
    return n;
}

/// The agent's `services` answer for backend `index` of the first service.
std::optional<admin::Json> backend_status(const Deployment& d, size_t index) {
    auto r = admin::call(d.dir.path() + "/agent.sock", admin::Request{"services", {}}, 5s);
    if (!r || !r->ok) {
        return std::nullopt;
    }
    const auto& svcs = r->data["services"];
    if (!svcs.is_array() || svcs.empty() || svcs[0]["backends"].size() <= index) {
        return std::nullopt;
    }
    return svcs[0]["backends"][index];
}

/// The agent's sallyport_agent_backend_up sample for backend port `port`
/// ("" when absent).
std::string backend_up(const Deployment& d, uint16_t port) {
    auto r = admin::call(d.dir.path() + "/agent.sock", admin::Request{"metrics", {}}, 5s);
    if (!r || !r->ok || !r->data["text"].is_string()) {
        return "";
    }
    const std::string text = r->data["text"].get<std::string>();
    const std::string head =
        fmt::format("sallyport_agent_backend_up{{service=\"hc\",backend=\"127.0.0.1:{}\"}} ", port);
    const size_t at = text.find(head);
    if (at == std::string::npos) {
        return "";
    }
    const size_t end = text.find('\n', at);
    return text.substr(at + head.size(), end - at - head.size());
}

}  // namespace

TEST_SUITE("integration.health_check") {
    TEST_CASE("health: a backend that stops listening is taken out, and back when it returns") {
        const uint16_t pa = free_port();
        const uint16_t pb = free_port();
        NamedServer a("A", pa);
        NamedServer b("B", pb);
        REQUIRE(a.start());
        REQUIRE(b.start());
        Deployment d;
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        d.start_agent(
            Deployment::service("hc", fmt::format("127.0.0.1:{}", port),
                                fmt::format("127.0.0.1:{}\", \"127.0.0.1:{}", pa, pb),
                                "health_check_interval_ms = 200\nhealth_check_timeout_ms = "
                                "100\nhealth_check_rise = 2\nhealth_check_fall = 2"));
        REQUIRE(d.wait_relay_listener("hc", 10s));

        // Both take sessions while both are up.
        int seen_a = 0;
        int seen_b = 0;
        for (int i = 0; i < 10; ++i) {
            const auto who = session(port);
            seen_a += who == "A" ? 1 : 0;
            seen_b += who == "B" ? 1 : 0;
        }
        CHECK(seen_a > 0);
        CHECK(seen_b > 0);
        CHECK(seen_a + seen_b == 10);
        const auto up = backend_status(d, 0);
        REQUIRE(up);
        CHECK((*up)["check"] == "up");
        CHECK((*up)["healthy"] == true);
        CHECK(backend_up(d, pa) == "1");

        // A stops listening: two refused checks take it down.
        a.stop();
        const std::string down = fmt::format(
            "backend-down SERVICE=hc BACKEND_ADDR=127.0.0.1:{} REASON=ECONNREFUSED "
            "CHECKS=2",
            pa);
        REQUIRE(d.agent.wait_for_output(down, 15s));
        // The verdict reaches every worker by message; the status socket
        // answers once all of them hold it.
        bool skipped = false;
        for (int i = 0; i < 100 && !skipped; ++i) {
            const auto st = backend_status(d, 0);
            skipped = st && (*st)["check"] == "down" && (*st)["healthy"] == false;
            if (!skipped) {
                std::this_thread::sleep_for(50ms);
            }
        }
        CHECK(skipped);
        CHECK(backend_up(d, pa) == "0");
        CHECK(backend_up(d, pb) == "1");
        // New sessions all go to B, and none tries A first: no connect to
        // A fails on their behalf (backend-failed).
        const size_t failed_before = count(d.agent.output(), "backend-failed");
        for (int i = 0; i < 10; ++i) {
            CHECK(session(port) == "B");
        }
        CHECK(count(d.agent.output(), "backend-failed") == failed_before);

        // A reload rebuilds the selectors; the checks keep A's verdict and
        // hand it to the new ones, so sessions still skip A.
        d.agent.signal(SIGHUP);
        REQUIRE(d.agent.wait_for_output("agent configuration reloaded", 10s));
        std::this_thread::sleep_for(100ms);  // the verdict is one message behind
        for (int i = 0; i < 10; ++i) {
            CHECK(session(port) == "B");
        }
        CHECK(count(d.agent.output(), "backend-failed") == failed_before);
        CHECK(count(d.agent.output(), "backend-down") == 1);

        // A listens again: two good checks bring it back.
        REQUIRE(a.start());
        REQUIRE(d.agent.wait_for_output(
            fmt::format("backend-up SERVICE=hc BACKEND_ADDR=127.0.0.1:{} CHECKS=2", pa), 15s));
        bool back = false;
        for (int i = 0; i < 100 && !back; ++i) {
            const auto st = backend_status(d, 0);
            back = st && (*st)["check"] == "up" && (*st)["healthy"] == true;
            if (!back) {
                std::this_thread::sleep_for(50ms);
            }
        }
        CHECK(back);
        CHECK(backend_up(d, pa) == "1");
        seen_a = 0;
        for (int i = 0; i < 20 && seen_a == 0; ++i) {
            seen_a += session(port) == "A" ? 1 : 0;
        }
        CHECK(seen_a > 0);
        CHECK(d.agent.running());
    }
}
