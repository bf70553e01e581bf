// SPDX-License-Identifier: Apache-2.0
// Who an agent is, as the relay sees it (issue 11): a name is held by one
// identity at a time, and certificate mode works as sallyport.toml(5) says.
#include <sys/socket.h>

#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "fixture.hpp"

using namespace sp::test;
using namespace std::chrono_literals;

namespace {

std::string svc(const std::string& name, uint16_t listen, uint16_t backend) {
    return Deployment::service(name, fmt::format("127.0.0.1:{}", listen),
                               fmt::format("127.0.0.1:{}", backend));
}

// `n` bytes of pattern `seed` through the relay to a HashReply backend: the
// backend's SHA-256 must equal ours.
bool hashed_exchange(uint16_t port, uint64_t seed, size_t n) {
    std::string payload(n, '\0');
    fill_pattern(seed, 0, payload.data(), payload.size());
    return sp::test::exchange(port, payload) == sha256_hex(payload);
}

}  // namespace

TEST_SUITE("integration.agent_identity") {
    TEST_CASE(
        "identity: a second agent with the same name and another key is refused, "
        "the first keeps serving") {
        TestServer first(TestServer::Mode::HashReply);
        TestServer second(TestServer::Mode::Banner);
        Deployment d;
        d.make_keys({"agent1", "agent2"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        const auto cfg1 = d.write_agent_config("same-name", svc("s", port, first.port()), 2,
                                               "agent1", "agent1.toml");
        d.agent = d.start_agent_process(cfg1, "agent1.log");
        REQUIRE(connect_retry("127.0.0.1", port, 10s));
        REQUIRE(hashed_exchange(port, 1, 1 << 16));

        const auto cfg2 = d.write_agent_config("same-name", svc("s", port, second.port()), 2,
                                               "agent2", "agent2.toml");
        auto intruder = d.start_agent_process(cfg2, "agent2.log");
        REQUIRE(d.relay.wait_for_output("REASON=name-conflict", 10s));
        // The intruder keeps retrying: whatever it does for a few seconds,
        // every session still reaches the first agent's backend, whole.
        const auto until = std::chrono::steady_clock::now() + 4s;
        int sessions = 0;
        while (std::chrono::steady_clock::now() < until && sessions < 400) {
            CHECK(hashed_exchange(port, static_cast<uint64_t>(sessions), 4096));
            ++sessions;
            std::this_thread::sleep_for(10ms);
        }
        CHECK(sessions > 10);
        CHECK(second.accepted() == 0);
        const std::string log = d.relay.output();
        CHECK(log.find("REASON=replaced") == std::string::npos);
        CHECK(log.find("listeners-suspended") == std::string::npos);
        CHECK(count_occurrences(log, "agent-connected") == 1);
        CHECK(log.find("KEY_ID=agent2 REASON=name-conflict") != std::string::npos);
        CHECK(intruder.wait_for_output("relay-disconnected", 5s));
        (void)intruder.stop();
    }

    TEST_CASE("identity: the same name and key replaces the older connection") {
        TestServer sink(TestServer::Mode::HashReply);
        Deployment d;
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        d.start_agent(svc("s", port, sink.port()));
        REQUIRE(connect_retry("127.0.0.1", port, 10s));
        // A copy of the same agent (same name, same key) is a restart as far
        // as the relay can tell: it takes over.
        // Its own status socket: a live agent holds agent.sock.
        auto copy = d.start_agent_process(
            d.write_agent_config("agent1", svc("s", port, sink.port()), 4, "agent1", "copy.toml"),
            "copy.log");
        REQUIRE(d.relay.wait_for_output("REASON=replaced", 10s));
        (void)d.agent.stop();
        REQUIRE(copy.wait_for_output("relay-connected", 5s));
        REQUIRE(connect_retry("127.0.0.1", port, 10s));
        CHECK(hashed_exchange(port, 7, 1 << 16));
        (void)copy.stop();
    }
}

namespace {

// A CA, a relay certificate and two agent certificates (one from another CA)
// made with the openssl CLI in `dir`.
bool make_certs(const std::string& dir) {
    const auto sh = [&](const std::string& cmd) {
        return run({"/bin/sh", "-c", "cd '" + dir + "' && " + cmd}, 30s).status == 0;
    };
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    const auto leaf = [&](const std::string& name, const std::string& cn, const std::string& ca) {
        return sh("openssl req " + ec + " -keyout " + name + ".pem -out " + name +
                  ".csr -subj /CN=" + cn + " 2>/dev/null") &&
               sh("openssl x509 -req -in " + name + ".csr -CA " + ca + ".crt -CAkey " + ca +
                  ".key -CAcreateserial -out " + name + ".crt -days 2 2>/dev/null");
    };
    return sh("openssl req -x509 " + ec +
              " -keyout ca.key -out ca.crt -subj /CN=test-ca -days 2 2>/dev/null") &&
           sh("openssl req -x509 " + ec +
              " -keyout rogue-ca.key -out rogue-ca.crt -subj /CN=rogue-ca -days 2 2>/dev/null") &&
           leaf("relay", "relay", "ca") && leaf("agent", "cert-agent", "ca") &&
           leaf("rogue", "cert-agent", "rogue-ca") && sh("chmod 600 *.pem");
}

std::string cert_agent_config(const std::string& dir, uint16_t control_port,
                              const std::string& cert, const std::string& services) {
    return fmt::format(R"([agent]
name = "cert-agent"
status_socket = "{1}/{2}.sock"
pool = 2
threads = 1
[[relay]]
address = "127.0.0.1:{0}"
certificate = "{1}/{2}.crt"
private_key = "{1}/{2}.pem"
relay_ca = "{1}/ca.crt"
{3}
)",
                       control_port, dir, cert, services);
}

}  // namespace

TEST_SUITE("integration.agent_identity") {
    TEST_CASE(
        "identity: a certificate agent reaches a relay configured as sallyport.toml(5) "
        "says; a certificate from another CA is refused") {
        TestServer sink(TestServer::Mode::HashReply);
        Deployment d;
        REQUIRE(make_certs(d.dir.path()));
        const std::string p = d.dir.path();
        // The [auth] of sallyport.toml(5)'s certificate mode: certificate,
        // private_key and agent_ca, no keys; allow_agents as an admin would.
        const auto relay_cfg = d.dir.write("relay-cert.toml", fmt::format(R"([relay]
threads = 2
control_listen = ["127.0.0.1:{0}"]
allow_listen = ["127.0.0.1:1024-65535"]
status_socket = "{1}/relay.sock"

[auth]
certificate = "{1}/relay.crt"
private_key = "{1}/relay.pem"
agent_ca = "{1}/ca.crt"
allow_agents = ["127.0.0.0/8"]
)",
                                                                          d.control_port, p));
        REQUIRE(run({relay_bin(), "-c", relay_cfg, "--check-config"}, 10s).status == 0);
        d.relay = Process::start({relay_bin(), "-c", relay_cfg, "--log-target", "stderr"},
                                 p + "/relay.log");
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        d.agent = d.start_agent_process(
            d.dir.write("agent.toml",
                        cert_agent_config(p, d.control_port, "agent", svc("s", port, sink.port()))),
            "agent.log");
        REQUIRE(connect_retry("127.0.0.1", port, 10s));
        CHECK(d.relay.wait_for_output("KEY_ID=cert-agent", 5s));
        CHECK(hashed_exchange(port, 11, 1 << 20));

        // Same CN, but signed by a CA the relay does not trust.
        auto rogue = d.start_agent_process(
            d.dir.write("rogue.toml", cert_agent_config(p, d.control_port, "rogue",
                                                        svc("s", free_port(), sink.port()))),
            "rogue.log");
        CHECK(d.relay.wait_for_output("REASON=bad-key", 10s));
        CHECK(hashed_exchange(port, 12, 1 << 16));
        CHECK(d.relay.output().find("REASON=replaced") == std::string::npos);
        (void)rogue.stop();
    }
}
