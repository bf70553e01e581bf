// SPDX-License-Identifier: Apache-2.0
// The agent's operator interface against a live relay and two agents:
// every agent command through `sallyportctl --json` with a session running,
// agent drain (new sessions go to the other agent, the drained agent's
// established transfer finishes byte-exact, a service only it serves stays
// reachable), resume, and /metrics checked by promtool. Every wait is
// bounded; every process is stopped by its PID.
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "admin/protocol.hpp"
#include "fixture.hpp"

using namespace sp;
using namespace sp::test;
using admin::Json;
using namespace std::chrono_literals;

namespace {

RunResult ctl(const std::string& socket, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SP_CTL_BIN, "-s", socket};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, 20s);
}

/// `sallyportctl --json ARGS` on `socket`, parsed; fails the test otherwise.
Json ctl_json(const std::string& socket, std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    const auto r = ctl(socket, args);
    REQUIRE_MESSAGE(r.status == 0, r.output);
    const auto doc = Json::parse(r.output, nullptr, false);
    REQUIRE_MESSAGE(!doc.is_discarded(), r.output);
    return doc;
}

/// Polls `ok(doc)` on `sallyportctl --json ARGS` for up to 10 s.
template <class Pred>
Json ctl_until(const std::string& socket, const std::vector<std::string>& args, Pred ok) {
    Json doc;
    for (int i = 0; i < 100; ++i) {
        doc = ctl_json(socket, args);
        if (ok(doc)) {
            return doc;
        }
        std::this_thread::sleep_for(100ms);
    }
    return doc;
}

std::string agent_toml(Deployment& d, const std::string& name, const std::string& services,
                       const std::string& extra) {
    return d.dir.write(name + ".toml", fmt::format(R"([agent]
name = "{0}"
status_socket = "{1}/{0}.sock"
pool = 2
threads = 2
data_path = "{2}"
{3}

[[relay]]
address = "127.0.0.1:{4}"
key = "{1}/{0}.key"

{5}
)",
                                                   name, d.dir.path(), d.data_path, extra,
                                                   d.control_port, services));
}

/// One HTTP/1.0 GET on 127.0.0.1:port; the body when the status is 200.
std::string http_get(uint16_t port, const std::string& path) {
    auto fd = connect_to("127.0.0.1", port);
    REQUIRE(fd);
    set_timeouts(fd.get(), 10s);
    const std::string req = fmt::format("GET {} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    REQUIRE(send_all(fd.get(), req.data(), req.size()));
    const std::string resp = recv_all(fd.get(), 16 << 20);
    const bool ok = resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200");
    REQUIRE_MESSAGE(ok, resp);
    const auto body = resp.find("\r\n\r\n");
    REQUIRE(body != std::string::npos);
    return resp.substr(body + 4);
}

/// A client of a HashReply backend that sends in two parts, so the session
/// stays established between them.
class Transfer final {
public:
    explicit Transfer(uint16_t port) : fd_(connect_to("127.0.0.1", port, 5s)) {
        REQUIRE(fd_);
        set_timeouts(fd_.get(), 30s);
    }
    void send(uint64_t seed, size_t bytes) {
        std::string buf(1 << 20, '\0');
        for (size_t done = 0; done < bytes;) {
            const size_t n = std::min(buf.size(), bytes - done);
            fill_pattern(seed, sent_, buf.data(), n);
            sha_.update(buf.data(), n);
            REQUIRE(send_all(fd_.get(), buf.data(), n));
            sent_ += n;
            done += n;
        }
    }
    /// Half-closes and returns {expected, answered} hex SHA-256.
    std::pair<std::string, std::string> finish() {
        ::shutdown(fd_.get(), SHUT_WR);
        return {sha_.hex(), recv_all(fd_.get())};
    }
    [[nodiscard]] uint64_t sent() const { return sent_; }

private:
    UniqueFd fd_;
    Sha256 sha_;
    uint64_t sent_ = 0;
};

/// One short session through `port` to a HashReply backend; true when the
/// backend's hash matches.
bool short_session(uint16_t port, uint64_t seed) {
    std::string payload(64 * 1024, '\0');
    fill_pattern(seed, 0, payload.data(), payload.size());
    return sp::test::exchange(port, payload) == sha256_hex(payload);
}

}  // namespace

TEST_SUITE("integration.ops_agent") {
    TEST_CASE("ops_agent: every command, drain to a second agent, resume, metrics") {
        Deployment d;
        d.make_keys({"agent1", "agent2"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        TestServer b1(TestServer::Mode::HashReply);  // agent1's backend of "svc"
        TestServer b2(TestServer::Mode::HashReply);  // agent2's backend of "svc"
        TestServer solo_backend(TestServer::Mode::Echo);
        const uint16_t p_svc = free_port();
        const uint16_t p_solo = free_port();
        const uint16_t p_metrics = free_port();
        const std::string svc_listen = fmt::format("127.0.0.1:{}", p_svc);
        const std::string relay_addr = fmt::format("127.0.0.1:{}", d.control_port);
        const std::string sock1 = d.dir.path() + "/agent1.sock";
        const std::string sock2 = d.dir.path() + "/agent2.sock";

        const auto cfg1 = agent_toml(
            d, "agent1",
            Deployment::service("svc", svc_listen, fmt::format("127.0.0.1:{}", b1.port())) +
                Deployment::service("solo", fmt::format("127.0.0.1:{}", p_solo),
                                    fmt::format("127.0.0.1:{}", solo_backend.port())),
            fmt::format("metrics_listen = \"127.0.0.1:{}\"", p_metrics));
        d.agent = d.start_agent_process(cfg1, "agent1.log");
        REQUIRE_MESSAGE(d.agent.wait_for_output("config-applied", 10s), d.agent.output());
        REQUIRE(connect_retry("127.0.0.1", p_svc, 10s));

        // A transfer that stays established through everything below.
        Transfer t(p_svc);
        t.send(7, 4 << 20);

        SUBCASE("commands") {
            const auto st = ctl_until(sock1, {"status"}, [&](const Json& j) {
                return j.value("sessions", 0) == 1 && j.value("up_bytes", uint64_t{0}) >= t.sent();
            });
            CHECK(st["program"] == "sallyport-agent");
            CHECK(st["name"] == "agent1");
            CHECK(st["workers"] == 2);
            CHECK(st["draining"] == false);
            CHECK(st["relays"] == 1);
            CHECK(st["relays_up"] == 1);
            CHECK(st["services"] == 2);
            CHECK(st["sessions"] == 1);
            CHECK(st["sessions_total"].get<uint64_t>() >= 1);
            CHECK(st["up_bytes"].get<uint64_t>() >= t.sent());

            const auto rl = ctl_json(sock1, {"relays"});
            REQUIRE(rl["relays"].size() == 1);
            const auto& r0 = rl["relays"][0];
            CHECK(r0["address"] == relay_addr);
            CHECK(r0["state"] == "ready");
            CHECK(r0["since"].is_string());
            CHECK((r0["rtt_ms"].is_number() || r0["rtt_ms"].is_null()));
            // The last relay-disconnected, if the first attempt failed.
            if (d.agent.output().find("relay-disconnected") == std::string::npos) {
                CHECK(r0["last_error"].is_null());
            } else {
                CHECK(r0["last_error"].is_string());
            }
            CHECK(r0["pool_target"] == 2);
            CHECK(r0["pool_idle"].is_number_unsigned());
            CHECK(r0["standby"] == false);

            const auto sv = ctl_json(sock1, {"services"});
            REQUIRE(sv["services"].size() == 2);
            const auto& s0 = sv["services"][0];
            CHECK(s0["name"] == "svc");
            CHECK(s0["listen"] == Json::array({svc_listen}));
            CHECK(s0["sessions"] == 1);
            REQUIRE(s0["backends"].size() == 1);
            CHECK(s0["backends"][0]["address"] == fmt::format("127.0.0.1:{}", b1.port()));
            CHECK(s0["backends"][0]["healthy"] == true);
            CHECK(s0["backends"][0]["sessions"] == 1);
            CHECK(sv["services"][1]["name"] == "solo");
            CHECK(sv["services"][1]["sessions"] == 0);

            const auto ss = ctl_until(sock1, {"sessions"}, [&](const Json& j) {
                return j["sessions"].size() == 1 &&
                       j["sessions"][0]["up_bytes"].get<uint64_t>() == t.sent();
            });
            REQUIRE(ss["sessions"].size() == 1);
            const auto& x = ss["sessions"][0];
            CHECK(x["id"].get<std::string>().size() == 16);
            CHECK(x["client"].get<std::string>().starts_with("127.0.0.1:"));
            CHECK(x["service"] == "svc");
            CHECK(x["backend"] == fmt::format("127.0.0.1:{}", b1.port()));
            CHECK(x["relay"] == relay_addr);
            CHECK(x["age_s"].is_number());
            CHECK(x["up_bytes"] == t.sent());
            CHECK(x["down_bytes"] == 0);
            CHECK(ctl_json(sock1, {"sessions", "--service", "solo"})["sessions"].empty());
            CHECK(ctl_json(sock1, {"sessions", "--client", "10.0.0.0/8"})["sessions"].empty());
            CHECK(ctl_json(sock1, {"sessions", "--client", "127.0.0.1"})["sessions"].size() == 1);
            // The relay's SESSION_ID, so both journals can be joined.
            CHECK(d.relay.output().find(x["id"].get<std::string>()) != std::string::npos);

            // Human output: columns with units.
            const auto table = ctl(sock1, {"sessions"});
            CHECK(table.status == 0);
            CHECK(table.output.find("MiB") != std::string::npos);
            CHECK(ctl(sock1, {"listeners"}).status == 2);  // a relay command

            const auto help = ctl_json(sock1, {"help"});
            std::vector<std::string> names;
            for (const auto& c : help["commands"]) {
                names.push_back(c["name"].get<std::string>());
            }
            for (const char* want :
                 {"drain", "metrics", "relays", "reload", "resume", "services", "sessions"}) {
                CAPTURE(want);
                CHECK(std::find(names.begin(), names.end(), want) != names.end());
            }
            CHECK(ctl_json(sock1, {"reload"})["result"] == "applied");

            const auto hashes = t.finish();
            CHECK(hashes.second == hashes.first);
        }

        SUBCASE("drain moves new sessions to the second agent; resume brings them back") {
            const auto cfg2 = agent_toml(
                d, "agent2",
                Deployment::service("svc", svc_listen, fmt::format("127.0.0.1:{}", b2.port())), "");
            auto agent2 = d.start_agent_process(cfg2, "agent2.log");
            REQUIRE_MESSAGE(agent2.wait_for_output("config-applied", 10s), agent2.output());

            CHECK(ctl_json(sock1, {"drain"})["draining"] == true);
            REQUIRE_MESSAGE(d.relay.wait_for_output("agent-drain", 10s), d.relay.output());
            CHECK(d.agent.wait_for_output("agent-drain", 5s));
            CHECK(ctl_json(sock1, {"status"})["draining"] == true);
            CHECK(ctl_json(sock1, {"drain"})["draining"] == true);  // idempotent
            CHECK(count_occurrences(d.relay.output(), "agent-drain") == 1);

            const int b1_before = b1.accepted();
            const int b2_before = b2.accepted();
            for (uint64_t i = 0; i < 8; ++i) {
                CAPTURE(i);
                CHECK(short_session(p_svc, 100 + i));
            }
            CHECK(b1.accepted() == b1_before);
            CHECK(b2.accepted() == b2_before + 8);

            // Only agent1 serves "solo": drained, it still takes it.
            CHECK(sp::test::exchange(p_solo, "solo") == "solo");

            // The established transfer goes on through the drain.
            t.send(7, 4 << 20);
            const auto hashes = t.finish();
            CHECK(hashes.second == hashes.first);
            CHECK(ctl_until(sock1, {"sessions"},
                            [](const Json& j) { return j["sessions"].empty(); })["sessions"]
                      .empty());

            CHECK(ctl_json(sock1, {"resume"})["draining"] == false);
            REQUIRE_MESSAGE(d.relay.wait_for_output("agent-resume", 10s), d.relay.output());
            CHECK(d.agent.wait_for_output("agent-resume", 5s));
            CHECK(ctl_json(sock1, {"status"})["draining"] == false);
            bool back = false;
            for (uint64_t i = 0; i < 40 && !back; ++i) {
                CHECK(short_session(p_svc, 200 + i));
                back = b1.accepted() > b1_before;
            }
            CHECK(back);
            // The second agent answers too, with its own socket.
            CHECK(ctl_json(sock2, {"status"})["name"] == "agent2");
            agent2.stop();
        }

        SUBCASE("metrics: promtool accepts them, and they count what happened") {
            for (uint64_t i = 0; i < 3; ++i) {
                CHECK(short_session(p_svc, 300 + i));
            }
            const auto hashes = t.finish();
            CHECK(hashes.second == hashes.first);
            (void)ctl_until(sock1, {"status"}, [](const Json& j) { return j["sessions"] == 0; });
            const std::string text = http_get(p_metrics, "/metrics");
            const auto via_ctl = ctl_json(sock1, {"metrics"});
            CHECK(via_ctl["text"].get<std::string>().find("sallyport_agent_sessions_total") !=
                  std::string::npos);
            // Every session of "svc" so far (the readiness probe's too).
            const auto total = ctl_json(sock1, {"status"})["sessions_total"].get<uint64_t>();
            CHECK(total >= 4);
            const std::string sessions_line =
                fmt::format("sallyport_agent_sessions_total{{service=\"svc\"}} {}\n", total);
            const std::string duration_line = fmt::format(
                "sallyport_agent_session_duration_seconds_count{{service=\"svc\"}} {}\n", total);
            for (const std::string& family :
                 {std::string("sallyport_build_info{program=\"sallyport-agent\""), sessions_line,
                  duration_line, std::string("sallyport_agent_sessions_open{service=\"svc\"} 0"),
                  std::string("sallyport_agent_bytes_total{service=\"svc\",direction=\"up\"}"),
                  std::string("sallyport_agent_backend_connect_seconds_bucket"),
                  std::string("sallyport_agent_idle_channels{relay=\""),
                  std::string("sallyport_agent_relay_up{relay=\""),
                  std::string("sallyport_draining 0")}) {
                CAPTURE(family);
                CHECK(text.find(family) != std::string::npos);
            }
            const std::string file = d.dir.write("metrics.txt", text);
            if (std::filesystem::exists("/usr/bin/promtool")) {
                const auto check = run({"/bin/sh", "-c", "promtool check metrics < " + file}, 30s);
                CHECK_MESSAGE(check.status == 0, check.output);
            } else {
                MESSAGE("promtool not installed: exposition format not checked");
            }
        }
    }
}
