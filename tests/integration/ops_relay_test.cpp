// SPDX-License-Identifier: Apache-2.0
// Operating a live relay (issue 12, relay side): every relay command through
// `sallyportctl --json` with sessions running; drain and resume around a
// 256 MiB transfer; close of exactly one session; the metrics endpoint
// linted by promtool and scraped by a real Prometheus server. Real binaries
// on 127.0.0.1; every wait is bounded and every process stopped by its PID.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "admin/protocol.hpp"
#include "fixture.hpp"

using namespace sp::test;
using sp::admin::Json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrometheus = "/usr/bin/prometheus";
constexpr const char* kPromtool = "/usr/bin/promtool";

struct Relay {
    Deployment d;
    uint16_t port = 0;                // the service's public port
    uint16_t metrics_port = 0;        // 0: no metrics_listen
    uint16_t agent_metrics_port = 0;  // the agent's, when metrics are on

    explicit Relay(uint16_t backend, bool metrics = false) {
        if (metrics) {
            metrics_port = free_port();
            d.relay_extra = fmt::format("metrics_listen = \"127.0.0.1:{}\"\n", metrics_port);
            agent_metrics_port = free_port();
            d.agent_extra = fmt::format("metrics_listen = \"127.0.0.1:{}\"\n", agent_metrics_port);
        }
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        port = free_port();
        d.start_agent(Deployment::service("svc", fmt::format("127.0.0.1:{}", port),
                                          fmt::format("127.0.0.1:{}", backend)),
                      4);
        REQUIRE(d.relay.wait_for_output("listener-open", 10s));
    }

    [[nodiscard]] std::string socket() const { return d.dir.path() + "/relay.sock"; }

    /// sallyportctl -s SOCKET ARGS: exit status and output.
    [[nodiscard]] RunResult ctl(const std::vector<std::string>& args) const {
        std::vector<std::string> argv = {SP_CTL_BIN, "-s", socket()};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, 20s);
    }

    /// sallyportctl --json ARGS, which must succeed; its document.
    [[nodiscard]] Json json(const std::vector<std::string>& args) const {
        std::vector<std::string> all = {"--json"};
        all.insert(all.end(), args.begin(), args.end());
        const auto r = ctl(all);
        REQUIRE_MESSAGE(r.status == 0, r.output);
        const Json doc = Json::parse(r.output, nullptr, false);
        REQUIRE_MESSAGE(!doc.is_discarded(), r.output);
        return doc;
    }
};

uint16_t local_port(int fd) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    return ntohs(sa.sin_port);
}

/// A client with one echoed round trip done, so its session is open on
/// both ends before the test looks.
struct Client {
    sp::UniqueFd fd;
    uint16_t port = 0;

    explicit Client(uint16_t relay_port) : fd(connect_to("127.0.0.1", relay_port)) {
        REQUIRE(fd);
        set_timeouts(fd.get(), 10s);
        REQUIRE(send_all(fd.get(), "x", 1));
        REQUIRE(recv_n(fd.get(), 1) == "x");
        port = local_port(fd.get());
    }
};

/// A connected unix stream socket, or an invalid fd.
sp::UniqueFd connect_unix(const std::string& path) {
    sp::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (!fd || path.size() >= sizeof sa.sun_path) {
        return {};
    }
    std::copy(path.begin(), path.end(), sa.sun_path);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        return {};
    }
    return fd;
}

/// Sends `bytes` pattern bytes through an echo session and checks that the
/// same bytes come back.
bool echo_exact(int fd, uint64_t bytes, uint64_t seed) {
    Sha256 sent;
    Sha256 got;
    uint64_t received = 0;
    std::thread reader([&] {
        std::vector<char> buf(1 << 16);
        while (received < bytes) {
            const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
            if (n <= 0) {
                break;
            }
            got.update(buf.data(), static_cast<size_t>(n));
            received += static_cast<uint64_t>(n);
        }
    });
    std::vector<char> buf(1 << 16);
    bool ok = true;
    for (uint64_t off = 0; off < bytes && ok; off += buf.size()) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), bytes - off));
        fill_pattern(seed, off, buf.data(), n);
        sent.update(buf.data(), n);
        ok = send_all(fd, buf.data(), n);
    }
    reader.join();
    return ok && received == bytes && got.hex() == sent.hex();
}

/// exchange() with a bound: sends `payload`, half-closes, returns what came
/// back before EOF, a reset or 10 s of silence.
std::string talk(uint16_t port, const std::string& payload) {
    auto fd = connect_to("127.0.0.1", port);
    if (!fd) {
        return "<connect failed>";
    }
    set_timeouts(fd.get(), 10s);
    (void)send_all(fd.get(), payload.data(), payload.size());  // a refusal may reset it
    ::shutdown(fd.get(), SHUT_WR);
    return recv_all(fd.get());
}

/// One HTTP/1.0 GET on 127.0.0.1:port: the body of a 200 answer, else "".
std::string http_get(uint16_t port, const std::string& path) {
    auto fd = connect_to("127.0.0.1", port, 2s);
    if (!fd) {
        return {};
    }
    set_timeouts(fd.get(), 10s);
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (!send_all(fd.get(), req.data(), req.size())) {
        return {};
    }
    const std::string all = recv_all(fd.get(), 16 << 20);
    const auto body = all.find("\r\n\r\n");
    if (body == std::string::npos || all.find(" 200 ") > all.find("\r\n")) {
        return {};
    }
    return all.substr(body + 4);
}

bool has_command(const Json& help, const std::string& name) {
    return std::any_of(help["commands"].begin(), help["commands"].end(),
                       [&](const Json& c) { return c["name"] == name; });
}

}  // namespace

TEST_SUITE("integration.ops_relay") {
    TEST_CASE("ops: every relay command answers through sallyportctl --json with sessions open") {
        TestServer echo(TestServer::Mode::Echo);
        Relay r(echo.port());
        Client a(r.port);
        Client b(r.port);

        const Json help = r.json({"help"});
        for (const char* c : {"agents", "listeners", "sessions", "close", "drain", "resume"}) {
            CAPTURE(c);
            CHECK(has_command(help, c));
        }

        const Json st = r.json({"status"});
        CHECK(st["program"] == "sallyport-relay");
        CHECK(st["workers"] == 2);
        CHECK(st["draining"] == false);
        CHECK(st["agents"] == 1);
        CHECK(st["listeners"] == 1);
        CHECK(st["sessions"] == 2);
        CHECK(st["up_bytes"].get<uint64_t>() >= 2);
        CHECK(st["down_bytes"].get<uint64_t>() >= 2);

        const Json agents = r.json({"agents"});
        REQUIRE(agents["agents"].size() == 1);
        const Json& ag = agents["agents"][0];
        CHECK(ag["name"] == "agent1");
        CHECK(ag["key_id"] == "agent1");
        CHECK(ag["address"].get<std::string>().starts_with("127.0.0.1:"));
        CHECK(ag["since"].get<std::string>().ends_with("Z"));
        CHECK((ag["rtt_ms"].is_number() || ag["rtt_ms"].is_null()));
        CHECK(ag["pool_target"].get<uint64_t>() >= 1);
        CHECK(ag["pool_idle"].is_number_unsigned());
        CHECK(ag["sessions"] == 2);
        CHECK(ag["config_generation"].is_number_unsigned());

        const Json ls = r.json({"listeners"});
        REQUIRE(ls["listeners"].size() == 1);
        const Json& l = ls["listeners"][0];
        CHECK(l["address"] == fmt::format("127.0.0.1:{}", r.port));
        CHECK(l["service"] == "svc");
        CHECK(l["agents"] == Json::array({"agent1"}));
        CHECK(l["state"] == "open");
        CHECK(l["sessions"] == 2);
        CHECK(l["accepts"] == 2);
        CHECK(l["refusals"] == Json::object());

        const Json ss = r.json({"sessions"});
        REQUIRE(ss["sessions"].size() == 2);
        std::vector<uint16_t> ports;
        for (const Json& s : ss["sessions"]) {
            CHECK(s["id"].get<std::string>().size() == 16);
            CHECK(s["service"] == "svc");
            CHECK(s["agent"] == "agent1");
            CHECK(s["age_s"].get<double>() >= 0);
            CHECK(s["up_bytes"] == 1);
            CHECK(s["down_bytes"] == 1);
            const std::string client = s["client"];
            REQUIRE(client.starts_with("127.0.0.1:"));
            ports.push_back(static_cast<uint16_t>(std::stoi(client.substr(10))));
        }
        std::sort(ports.begin(), ports.end());
        std::vector<uint16_t> mine = {a.port, b.port};
        std::sort(mine.begin(), mine.end());
        CHECK(ports == mine);
        CHECK(r.json({"sessions", "--service", "svc"})["sessions"].size() == 2);
        CHECK(r.json({"sessions", "--service", "other"})["sessions"].empty());
        CHECK(r.json({"sessions", "--client", "127.0.0.0/8"})["sessions"].size() == 2);
        CHECK(r.json({"sessions", "--client", "10.0.0.0/8"})["sessions"].empty());

        // The human form: a table with a header row and one line per session.
        const auto table = r.ctl({"sessions"});
        REQUIRE(table.status == 0);
        CHECK(table.output.starts_with("ID"));
        CHECK(count_occurrences(table.output, "\n") == 3);

        const auto metrics = r.ctl({"metrics"});
        REQUIRE(metrics.status == 0);
        CHECK(
            metrics.output.find("sallyport_sessions_total{service=\"svc\",agent=\"agent1\"} 2\n") !=
            std::string::npos);
        CHECK(metrics.output.find("sallyport_agents_connected 1\n") != std::string::npos);

        CHECK(r.json({"reload"})["result"] == "applied");
        // A broken file is refused with its position; the relay goes on.
        const std::string good = read_file(r.d.dir.path() + "/relay.toml");
        std::string bad = good;
        const auto at = bad.find("threads = 2");
        REQUIRE(at != std::string::npos);
        bad.replace(at, 11, "threads = \"many\"");
        r.d.dir.write("relay.toml", bad);
        const auto refused = r.ctl({"reload"});
        CHECK(refused.status == 2);
        CHECK(refused.output.find("relay.toml:") != std::string::npos);
        r.d.dir.write("relay.toml", good);
        CHECK(r.json({"status"})["sessions"] == 2);

        const auto missing = r.ctl({"close", "0123456789abcdef"});
        CHECK(missing.status == 1);
        CHECK(missing.output.find("no open session 0123456789abcdef") != std::string::npos);
    }

    TEST_CASE("ops: drain keeps a 256 MiB transfer byte-exact, refuses new clients; resume") {
        TestServer echo(TestServer::Mode::Echo);
        Relay r(echo.port());
        auto fd = connect_to("127.0.0.1", r.port);
        REQUIRE(fd);
        set_timeouts(fd.get(), 30s);
        constexpr uint64_t kBytes = 256ULL << 20;
        constexpr uint64_t kBeforeDrain = 16ULL << 20;
        std::atomic<bool> drained{false};
        Sha256 sent;
        Sha256 got;
        std::atomic<uint64_t> received{0};
        std::thread reader([&] {
            std::vector<char> buf(1 << 16);
            while (received < kBytes) {
                const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
                if (n <= 0) {
                    break;
                }
                got.update(buf.data(), static_cast<size_t>(n));
                received += static_cast<uint64_t>(n);
            }
        });
        bool send_ok = true;
        std::thread writer([&] {
            std::vector<char> buf(1 << 16);
            for (uint64_t off = 0; off < kBytes && send_ok; off += buf.size()) {
                // Part of the transfer before the drain, the rest after it:
                // the session spans the drain whatever the machine's speed.
                if (off == kBeforeDrain) {
                    for (int i = 0; i < 600 && !drained; ++i) {
                        std::this_thread::sleep_for(100ms);
                    }
                }
                fill_pattern(11, off, buf.data(), buf.size());
                sent.update(buf.data(), buf.size());
                send_ok = send_all(fd.get(), buf.data(), buf.size());
            }
        });
        // A failed REQUIRE below must not leave the threads joinable.
        struct Joiner {
            std::function<void()> fn;
            ~Joiner() { fn(); }
        } joiner{[&] {
            drained = true;
            for (std::thread* t : {&writer, &reader}) {
                if (t->joinable()) {
                    t->join();
                }
            }
        }};
        for (int i = 0; i < 300 && received < kBeforeDrain / 2; ++i) {
            std::this_thread::sleep_for(100ms);
        }
        REQUIRE(received >= kBeforeDrain / 2);

        CHECK(r.json({"drain"}) == Json{{"draining", true}});
        CHECK(r.json({"status"})["draining"] == true);
        // A new client is accepted and closed at once, without a byte.
        CHECK(talk(r.port, "knock").empty());
        CHECK(r.d.relay.wait_for_output("REASON=draining", 10s));
        const Json ls = r.json({"listeners"});
        REQUIRE(ls["listeners"].size() == 1);
        CHECK(ls["listeners"][0]["state"] == "draining");
        CHECK(ls["listeners"][0]["refusals"]["draining"] == 1);
        CHECK(r.json({"sessions"})["sessions"].size() == 1);
        drained = true;

        writer.join();
        reader.join();
        CHECK(send_ok);
        CHECK(received == kBytes);
        CHECK(got.hex() == sent.hex());
        ::shutdown(fd.get(), SHUT_WR);
        char byte = 0;
        CHECK(::recv(fd.get(), &byte, 1, 0) == 0);
        CHECK(r.d.relay.wait_for_output("BYTES_UP=268435456 BYTES_DOWN=268435456", 10s));

        CHECK(r.json({"resume"}) == Json{{"draining", false}});
        CHECK(r.json({"status"})["draining"] == false);
        CHECK(talk(r.port, "hello again") == "hello again");
        CHECK(r.json({"listeners"})["listeners"][0]["state"] == "open");
    }

    TEST_CASE("ops: close ends exactly that session; the other goes on byte-exact") {
        TestServer echo(TestServer::Mode::Echo);
        Relay r(echo.port());
        Client victim(r.port);
        Client other(r.port);
        std::string id;
        const Json listed = r.json({"sessions"});  // named: a temporary would dangle in the loop
        for (const Json& s : listed["sessions"]) {
            if (s["client"] == fmt::format("127.0.0.1:{}", victim.port)) {
                id = s["id"];
            }
        }
        REQUIRE(id.size() == 16);

        CHECK(r.json({"close", id}) == Json{{"closed", id}});
        // Reset, not a clean end: the client learns the session was cut.
        char byte = 0;
        CHECK(::recv(victim.fd.get(), &byte, 1, 0) <= 0);
        CHECK(r.d.relay.wait_for_output("SESSION_ID=" + id, 10s, 2));
        const std::string log = r.d.relay.output();
        const auto at = log.find("REASON=operator");
        REQUIRE(at != std::string::npos);
        const auto begin = log.rfind('\n', at) + 1;  // npos + 1 == 0: the first line
        const std::string line = log.substr(begin, log.find('\n', at) - begin);
        CHECK(line.find("session-close") != std::string::npos);
        CHECK(line.find("SESSION_ID=" + id) != std::string::npos);
        CHECK(count_occurrences(log, "REASON=operator") == 1);

        CHECK(echo_exact(other.fd.get(), 8ULL << 20, 5));
        const Json left = r.json({"sessions"});
        REQUIRE(left["sessions"].size() == 1);
        CHECK(left["sessions"][0]["client"] == fmt::format("127.0.0.1:{}", other.port));
        CHECK(r.ctl({"close", id}).status == 1);
    }

    TEST_CASE("ops: hostile status-socket clients and a second relay on its path; sessions go on") {
        TestServer echo(TestServer::Mode::Echo);
        Relay r(echo.port());
        Client busy(r.port);
        std::atomic<bool> moved{false};
        std::thread transfer([&] { moved = echo_exact(busy.fd.get(), 64ULL << 20, 17); });

        // 10 MB without a newline: answered too-large and dropped, long
        // before all of it is sent.
        auto garbage = connect_unix(r.socket());
        REQUIRE(garbage);
        set_timeouts(garbage.get(), 10s);
        size_t sent = 0;
        const std::string chunk(65536, 'x');
        while (sent < (10U << 20)) {
            const ssize_t n = ::send(garbage.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
            if (n <= 0) {
                break;
            }
            sent += static_cast<size_t>(n);
        }
        CHECK(sent < (10U << 20));
        // A request that never ends holds no one up.
        auto slow = connect_unix(r.socket());
        REQUIRE(slow);
        const std::string partial = R"({"v":1,"cmd":)";
        REQUIRE(send_all(slow.get(), partial.data(), partial.size()));
        CHECK(r.json({"status"})["sessions"] == 1);

        // A second relay configured with the same status_socket: refused
        // at start with the path named, the first one untouched.
        std::string cfg = read_file(r.d.dir.path() + "/relay.toml");
        const std::string control = fmt::format("127.0.0.1:{}", r.d.control_port);
        cfg.replace(cfg.find(control), control.size(), fmt::format("127.0.0.1:{}", free_port()));
        const auto second_cfg = r.d.dir.write("relay2.toml", cfg, 0600);
        const auto second = run({relay_bin(), "-c", second_cfg, "--log-target", "stderr"}, 20s);
        CHECK(second.status != 0);
        CHECK_MESSAGE(second.output.find(r.socket()) != std::string::npos, second.output);

        transfer.join();
        CHECK(moved.load());
        CHECK(r.json({"status"})["sessions"] == 1);
        CHECK(r.d.relay.running());
    }

    TEST_CASE("ops: /metrics is promtool-clean and a real Prometheus counts the sessions") {
        TestServer echo(TestServer::Mode::Echo);
        Relay r(echo.port(), true);
        constexpr int kSessions = 3;
        for (int i = 0; i < kSessions; ++i) {
            CHECK(talk(r.port, "ping") == "ping");
        }
        CHECK(r.d.relay.wait_for_output("session-close", 10s, kSessions));

        std::string body;
        for (int i = 0; i < 50 && body.empty(); ++i) {
            body = http_get(r.metrics_port, "/metrics");
            if (body.empty()) {
                std::this_thread::sleep_for(100ms);
            }
        }
        REQUIRE(!body.empty());
        CHECK(body.find(fmt::format("sallyport_sessions_total{{service=\"svc\",agent=\"agent1\"}} "
                                    "{}\n",
                                    kSessions)) != std::string::npos);
        CHECK(body.find("sallyport_build_info{program=\"sallyport-relay\",version=\"") !=
              std::string::npos);
        CHECK(
            body.find("sallyport_session_setup_seconds_bucket{service=\"svc\",le=\"+Inf\"} 3\n") !=
            std::string::npos);
        CHECK(body.find("sallyport_session_duration_seconds_count{service=\"svc\"} 3\n") !=
              std::string::npos);
        CHECK(body.find("sallyport_session_bytes_total{service=\"svc\",agent=\"agent1\","
                        "direction=\"up\"} 12\n") != std::string::npos);

        if (::access(kPromtool, X_OK) == 0) {
            const std::string file = r.d.dir.write("metrics.txt", body);
            const auto lint =
                run({"/bin/sh", "-c", std::string(kPromtool) + " check metrics < " + file}, 30s);
            CHECK_MESSAGE(lint.status == 0, lint.output);
        } else {
            MESSAGE("promtool not installed (apt-get install prometheus): lint skipped");
        }

        if (::access(kPrometheus, X_OK) != 0) {
            MESSAGE("prometheus not installed (apt-get install prometheus): scrape test skipped");
            return;
        }
        TempDir prom_dir;
        const uint16_t prom_port = free_port();
        const std::string config =
            prom_dir.write("prometheus.yml", fmt::format(R"(global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sallyport-relay
    static_configs:
      - targets: ['127.0.0.1:{}']
  - job_name: sallyport-agent
    static_configs:
      - targets: ['127.0.0.1:{}']
)",
                                                         r.metrics_port, r.agent_metrics_port));
        Process prom = Process::start({kPrometheus, "--config.file=" + config,
                                       "--storage.tsdb.path=" + prom_dir.path() + "/data",
                                       fmt::format("--web.listen-address=127.0.0.1:{}", prom_port)},
                                      prom_dir.path() + "/prometheus.log");
        // Bounded: Prometheus starts, scrapes every second, and answers a
        // query once a sample is in.
        const auto deadline = std::chrono::steady_clock::now() + 90s;
        const auto query = [&](const std::string& q) {
            while (std::chrono::steady_clock::now() < deadline && prom.running()) {
                const std::string answer = http_get(prom_port, "/api/v1/query?query=" + q);
                Json doc = Json::parse(answer, nullptr, false);
                if (doc.is_object() && doc.value("status", "") == "success" &&
                    doc["data"].is_object() && doc["data"]["result"].is_array() &&
                    !doc["data"]["result"].empty()) {
                    return doc["data"]["result"][0]["value"][1].get<std::string>();
                }
                std::this_thread::sleep_for(500ms);
            }
            return std::string();
        };
        CHECK_MESSAGE(query("sum%28sallyport_sessions_total%29") == std::to_string(kSessions),
                      prom.output());
        // The agent, scraped by the same server, counts the same sessions.
        CHECK_MESSAGE(query("sum%28sallyport_agent_sessions_total%29") == std::to_string(kSessions),
                      prom.output());
        CHECK(prom.stop().has_value());
    }
}
