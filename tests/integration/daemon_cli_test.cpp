// SPDX-License-Identifier: Apache-2.0
// The daemons' command line, exit codes, key generation and lifecycle
// (SPEC section 2): real binaries, no mocks.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <regex>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "fixture.hpp"

using namespace sp::test;
using namespace std::chrono_literals;

TEST_SUITE("integration.daemon_cli") {
    TEST_CASE("cli: --help and --version exit 0 for both daemons") {
        for (const auto& bin : {relay_bin(), agent_bin()}) {
            const auto help = run({bin, "--help"}, 10s);
            CHECK(help.status == 0);
            CHECK(help.output.find("--check-config") != std::string::npos);
            CHECK(help.output.find("--log-target") != std::string::npos);
            const auto ver = run({bin, "--version"}, 10s);
            CHECK(ver.status == 0);
            CHECK(ver.output.find("0.") != std::string::npos);
        }
    }

    TEST_CASE("cli: usage errors exit 2 and name the argument") {
        const auto r = run({relay_bin(), "--frobnicate"}, 10s);
        CHECK(r.status == 2);
        CHECK(r.output.find("--frobnicate") != std::string::npos);
        const auto a = run({agent_bin(), "--gen-key", "x"}, 10s);
        CHECK(a.status == 2);
        const auto lvl = run({agent_bin(), "--log-level", "loud"}, 10s);
        CHECK(lvl.status == 2);
    }

    TEST_CASE("cli: --gen-key prints one NAME SECRET line of 32 bytes") {
        const auto r = run({relay_bin(), "--gen-key", "mft-1"}, 10s);
        CHECK(r.status == 0);
        CHECK(std::regex_match(r.output, std::regex("mft-1 [A-Za-z0-9_-]{43}\n")));
        const auto r2 = run({relay_bin(), "--gen-key", "mft-1"}, 10s);
        CHECK(r2.output != r.output);
        CHECK(run({relay_bin(), "--gen-key", "bad name"}, 10s).status == 2);
    }

    TEST_CASE("cli: a broken config exits 2 with FILE:LINE:COL and the key") {
        Deployment d;
        d.make_keys({"agent1"});
        const auto path = d.dir.write("relay.toml", "[relay]\nthreads = 2\ndrain_timout_s = 3\n");
        const auto r = run({relay_bin(), "-c", path, "--check-config"}, 10s);
        CHECK(r.status == 2);
        CHECK(r.output.find(path + ":3:1") != std::string::npos);
        CHECK(r.output.find("drain_timeout_s") != std::string::npos);  // the hint
        const auto started = run({relay_bin(), "-c", path}, 10s);
        CHECK(started.status == 2);
        const auto missing = run({agent_bin(), "-c", d.dir.path() + "/nope.toml"}, 10s);
        CHECK(missing.status == 2);
        CHECK(missing.output.find("nope.toml") != std::string::npos);
    }

    TEST_CASE("cli: --check-config prints every error of a file, each with FILE:LINE:COL") {
        Deployment d;
        d.make_keys({"agent1"});
        const auto relay = d.dir.write("relay.toml",
                                       "[relay]\nthreads = 5000\ndrain_timout_s = 3\n[auth]\n"
                                       "keys = \"relay.keys\"\nallow_agents = [\"10.0.0.0/33\"]\n"
                                       "[limits]\nmax_sessions = \"many\"\n");
        const auto r = run({relay_bin(), "-c", relay, "--check-config"}, 10s);
        CHECK(r.status == 2);
        for (const auto& want :
             {relay + ":2:11: relay.threads: ", relay + ":3:1: relay.drain_timout_s: ",
              relay + ":6:17: auth.allow_agents[0]: ", relay + ":8:16: limits.max_sessions: "}) {
            CAPTURE(want);
            CHECK(r.output.find(want) != std::string::npos);
        }
        CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 4);
        // Starting stops at the first and says how many more there are.
        const auto started = run({relay_bin(), "-c", relay}, 10s);
        CHECK(started.status == 2);
        CHECK(started.output.find(relay + ":2:11: relay.threads: ") != std::string::npos);
        CHECK(started.output.find("and 3 more errors") != std::string::npos);

        // The agent's file and its key file are both checked in one run.
        d.dir.write("agent1.key", read_file(d.agent_key("agent1")), 0640);
        const auto agent = d.dir.write(
            "agent.toml", fmt::format("[agent]\nname = \"a b\"\npool = -1\n[[relay]]\n"
                                      "address = \"127.0.0.1:1\"\nkey = \"{}\"\n[[service]]\n"
                                      "name = \"s\"\nlisten = [\"0.0.0.0:22\"]\n",
                                      d.agent_key("agent1")));
        const auto a = run({agent_bin(), "-c", agent, "--check-config"}, 10s);
        CHECK(a.status == 2);
        CHECK(a.output.find(agent + ":2:8: agent.name: ") != std::string::npos);
        CHECK(a.output.find(agent + ":3:8: agent.pool: ") != std::string::npos);
        CHECK(a.output.find(agent + ":7:1: service[0].backend: ") != std::string::npos);
        CHECK(a.output.find("chmod 600 " + d.agent_key("agent1")) != std::string::npos);
        CHECK(std::count(a.output.begin(), a.output.end(), '\n') == 4);
    }

    TEST_CASE("cli: --check-config refuses a file the control protocol could not send") {
        // 4097 listen entries passed the check once, then every CONFIG
        // failed to encode and the agent reconnected forever.
        Deployment d;
        d.make_keys({"agent1"});
        std::string services;
        for (int i = 0; i < 17; ++i) {
            services += fmt::format("[[service]]\nname = \"s{}\"\nlisten = [", i);
            for (int j = 0; j < (i < 16 ? 256 : 1); ++j) {
                services += fmt::format("\"127.0.{}.1:{}\", ", i, 2000 + j);
            }
            services += "]\nbackend = [\"127.0.0.1:9\"]\n";
        }
        const auto cfg = d.write_agent_config("agent1", services);
        const auto r = run({agent_bin(), "-c", cfg, "--check-config"}, 30s);
        CHECK(r.status == 2);
        CHECK(std::regex_search(
            r.output,
            std::regex(cfg + ":[0-9]+:11: service\\[16\\]\\.listen\\[0\\]: .*at most 4096")));
        const auto started = run({agent_bin(), "-c", cfg}, 30s);
        CHECK(started.status == 2);
    }

    TEST_CASE("cli: --check-config prints OK and refuses a world-readable key file") {
        Deployment d;
        d.make_keys({"agent1"});
        const auto cfg = d.write_relay_config();
        const auto ok = run({relay_bin(), "-c", cfg, "--check-config"}, 10s);
        CHECK(ok.status == 0);
        CHECK(ok.output == "OK\n");
        const auto agent_cfg = d.write_agent_config(
            "agent1", Deployment::service("s", "127.0.0.1:40000", "127.0.0.1:40001"));
        CHECK(run({agent_bin(), "-c", agent_cfg, "--check-config"}, 10s).status == 0);
        d.dir.write("relay.keys", read_file(d.dir.path() + "/relay.keys"), 0644);
        const auto bad = run({relay_bin(), "-c", cfg, "--check-config"}, 10s);
        CHECK(bad.status == 2);
        CHECK(bad.output.find("chmod 600") != std::string::npos);
    }

    TEST_CASE("cli: --check-config refuses a key file another user owns") {
        if (::geteuid() != 0) {
            MESSAGE("not root: cannot give a file to another user; skipped");
            return;
        }
        Deployment d;
        d.make_keys({"agent1"});
        const auto cfg = d.write_relay_config();
        const std::string keys = d.dir.path() + "/relay.keys";
        REQUIRE(::chown(keys.c_str(), 65534, 65534) == 0);
        const auto r = run({relay_bin(), "-c", cfg, "--check-config"}, 10s);
        CHECK(r.status == 2);
        CHECK(r.output.find(keys + ": key file is owned by") != std::string::npos);
        CHECK(r.output.find("chown ") != std::string::npos);
        REQUIRE(::chown(keys.c_str(), 0, 0) == 0);
        CHECK(run({relay_bin(), "-c", cfg, "--check-config"}, 10s).status == 0);
    }

    TEST_CASE("lifecycle: both daemons emit started and exit 0 on SIGTERM") {
        Deployment d;
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        d.start_agent(
            Deployment::service("s", "127.0.0.1:" + std::to_string(free_port()), "127.0.0.1:9"));
        REQUIRE(d.agent.wait_for_output(" started ", 10s));
        REQUIRE(d.agent.wait_for_output("relay-connected", 10s));
        d.agent.signal(SIGTERM);
        CHECK(d.agent.wait(10s) == 0);
        d.relay.signal(SIGINT);
        CHECK(d.relay.wait(10s) == 0);
        CHECK(d.relay.output().find(" stopping ") != std::string::npos);
        CHECK(d.agent.output().find(" stopping ") != std::string::npos);
    }

    TEST_CASE("lifecycle: a control port already in use is exit 1 with bind-failed") {
        Deployment d;
        d.make_keys({"agent1"});
        TestServer squatter(TestServer::Mode::Hold);
        d.control_port = squatter.port();
        d.start_relay();
        CHECK(d.relay.wait(10s) == 1);
        CHECK(d.relay.output().find("bind-failed") != std::string::npos);
    }
}

TEST_SUITE("integration.daemon_notify") {
    TEST_CASE("notify: READY, STATUS and STOPPING reach systemd's socket") {
        Deployment d;
        d.make_keys({"agent1"});
        const std::string path = d.dir.path() + "/notify.sock";
        sp::UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
        REQUIRE(::bind(sock.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        set_timeouts(sock.get(), 200ms);
        const auto cfg = d.write_relay_config();
        d.relay = Process::start({relay_bin(), "-c", cfg, "--log-target", "stderr"},
                                 d.dir.path() + "/relay.log", {"NOTIFY_SOCKET=" + path});
        std::string seen;
        const auto drain = [&](std::chrono::milliseconds t) {
            const auto until = std::chrono::steady_clock::now() + t;
            while (std::chrono::steady_clock::now() < until) {
                char buf[512];
                const ssize_t n = ::recv(sock.get(), buf, sizeof buf, 0);
                if (n > 0) {
                    seen.append(buf, static_cast<size_t>(n));
                    seen += '\n';
                }
            }
        };
        drain(1500ms);
        CHECK(seen.find("READY=1") != std::string::npos);
        CHECK(seen.find("STATUS=0 agents, 0 sessions") != std::string::npos);
        d.relay.signal(SIGTERM);
        drain(1000ms);
        CHECK(seen.find("STOPPING=1") != std::string::npos);
        CHECK(d.relay.wait(10s) == 0);
    }
}
