// SPDX-License-Identifier: Apache-2.0
// The relay's control port under abuse (issues 11 and 16): an authenticated
// agent whose channels die on arrival cannot make the relay ask for channels
// in a loop, garbage and forged hellos are dropped and logged sparingly, and
// one address holding thousands of idle connections does not keep an agent
// out. The misbehaving agent here is a test program speaking the protocol.
#include <poll.h>
#include <sys/socket.h>

#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "config/keys.hpp"
#include "control/frame.hpp"
#include "control/peer.hpp"
#include "control/tls.hpp"
#include "fixture.hpp"

using namespace sp::test;
using namespace std::chrono_literals;
namespace control = sp::control;
using Clock = std::chrono::steady_clock;

namespace {

bool wait_ready(int fd, short events, std::chrono::milliseconds t) {
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(t.count())) > 0;
}

// A control channel to the relay, driven by hand.
class FakeAgent {
public:
    bool connect(uint16_t port, const std::string& key_file) {
        auto keys = sp::config::load_keys(key_file, true);
        if (!keys || keys->empty()) {
            return false;
        }
        auto ctx = control::TlsContext::psk_client((*keys)[0].id, (*keys)[0].secret);
        auto fd = connect_to("127.0.0.1", port);
        if (!ctx || !fd) {
            return false;
        }
        auto s = control::TlsStream::create(*ctx, std::move(fd));
        if (!s) {
            return false;
        }
        for (int i = 0; i < 100; ++i) {
            const auto r = s->handshake();
            if (r.status == control::TlsStatus::Done) {
                peer_.emplace(std::move(*s));
                return true;
            }
            if (r.status == control::TlsStatus::Error) {
                return false;
            }
            (void)wait_ready(s->fd(), r.status == control::TlsStatus::WantWrite ? POLLOUT : POLLIN,
                             100ms);
        }
        return false;
    }

    bool send(const control::Message& m) {
        if (!peer_->send(m)) {
            return false;
        }
        for (int i = 0; i < 50 && (peer_->poll_events() & POLLOUT) != 0; ++i) {
            (void)wait_ready(peer_->fd(), POLLOUT, 100ms);
            if (!peer_->flush()) {
                return false;
            }
        }
        return true;
    }

    /// Frames that arrive within `t`.
    std::vector<control::Message> read(std::chrono::milliseconds t) {
        std::vector<control::Message> out;
        if (wait_ready(peer_->fd(), POLLIN, t)) {
            (void)peer_->read_frames([&](control::Message&& m) {
                out.push_back(std::move(m));
                return true;
            });
        }
        return out;
    }

private:
    std::optional<control::FramedPeer> peer_;
};

// Dials a data channel from `source` and sends `bytes`; the socket is
// returned so it stays open until the caller drops it.
sp::UniqueFd dial(uint16_t port, const std::string& bytes, const char* source = nullptr) {
    auto fd = connect_to("127.0.0.1", port, 2s, source);
    if (fd) {
        (void)send_all(fd.get(), bytes.data(), bytes.size());
    }
    return fd;
}

std::string hello_bytes(const control::Token& t) {
    const auto h = control::encode_channel_hello(t);
    return {reinterpret_cast<const char*>(h.data()), h.size()};
}

Process start_debug_relay(Deployment& d) {
    const auto cfg = d.write_relay_config();
    return Process::start(
        {relay_bin(), "-c", cfg, "--log-target", "stderr", "--log-level", "debug"},
        d.dir.path() + "/relay.log");
}

}  // namespace

TEST_SUITE("integration.control_port") {
    TEST_CASE("control port: channels dead on arrival and garbage hellos cause no storm") {
        Deployment d;
        d.make_keys({"agent1"});
        d.limits_extra = "pending_timeout_ms = 4000\n";
        d.relay = start_debug_relay(d);
        REQUIRE(d.relay.wait_for_output(" started ", 10s));

        FakeAgent a;
        REQUIRE(a.connect(d.control_port, d.agent_key("agent1")));
        const uint16_t port = free_port();
        REQUIRE(a.send(control::Hello{1, 1, "broken", "0.0.0", 4, 5000}));
        REQUIRE(a.send(control::Config{
            1, {control::ServiceSpec{"s", {fmt::format("127.0.0.1:{}", port)}, {}, {}, 0, 0}}}));
        // HELLO_ACK, then ONE OPEN_CHANNELS with the whole pool, CONFIG_RESULT.
        std::vector<control::Token> tokens;
        size_t frames = 0;
        bool acked = false;
        bool configured = false;
        for (int i = 0; i < 50 && !(acked && configured && !tokens.empty()); ++i) {
            for (auto& m : a.read(100ms)) {
                if (const auto* ack = std::get_if<control::HelloAck>(&m)) {
                    acked = true;
                    CHECK(ack->heartbeat_ms == 5000);
                } else if (const auto* oc = std::get_if<control::OpenChannels>(&m)) {
                    CHECK(acked);
                    ++frames;
                    tokens.insert(tokens.end(), oc->tokens.begin(), oc->tokens.end());
                } else if (std::holds_alternative<control::ConfigResult>(m)) {
                    configured = true;
                }
            }
        }
        REQUIRE(acked);
        REQUIRE(configured);
        CHECK(frames == 1);
        CHECK(tokens.size() == 4);

        // A client waits; every channel this agent dials speaks before its
        // binding header. For 3 s it dials each token it is given at once.
        auto client = dial(port, "hello");
        REQUIRE(client);
        std::vector<sp::UniqueFd> dialled;
        size_t used = 0;
        const auto until = Clock::now() + 3s;
        while (Clock::now() < until && used < 500) {
            for (; used < tokens.size(); ++used) {
                dialled.push_back(dial(d.control_port, hello_bytes(tokens[used]) + "BOOM!"));
            }
            for (auto& m : a.read(50ms)) {
                if (const auto* oc = std::get_if<control::OpenChannels>(&m)) {
                    tokens.insert(tokens.end(), oc->tokens.begin(), oc->tokens.end());
                }
            }
        }
        MESSAGE(fmt::format("3 s of dead-on-arrival channels: {} tokens issued", tokens.size()));
        CHECK(tokens.size() < 60);

        // Malformed hellos and forged tokens from two other addresses.
        std::string bad_version = "SPDC";
        bad_version += '\x09';
        bad_version += std::string(35, '\0');
        for (int i = 0; i < 100; ++i) {
            (void)dial(d.control_port, bad_version, "127.0.0.6");
            control::Token forged{};
            forged[5] = static_cast<uint8_t>(i);
            (void)dial(d.control_port, hello_bytes(forged), "127.0.0.7");
        }
        REQUIRE(d.relay.wait_for_output("AGENT_ADDR=127.0.0.7 REASON=token", 5s));
        REQUIRE(d.relay.wait_for_output("AGENT_ADDR=127.0.0.6 REASON=protocol", 5s));
        std::this_thread::sleep_for(300ms);
        const std::string log = d.relay.output();
        const size_t early = count_occurrences(log, "before its binding header");
        const size_t bad = count_occurrences(log, "AGENT_ADDR=127.0.0.6 ");
        const size_t forged = count_occurrences(log, "AGENT_ADDR=127.0.0.7 ");
        MESSAGE(
            fmt::format("log lines: {} early-bytes, {} malformed, {} forged", early, bad, forged));
        CHECK(early >= 1);
        CHECK(early <= 4);
        CHECK(bad <= 20);
        CHECK(forged <= 20);
        // Forged tokens are strangers' noise: debug priority, never above.
        CHECK(log.find("warn agent-rejected AGENT_ADDR=127.0.0.7") == std::string::npos);
        CHECK(log.find("notice agent-rejected AGENT_ADDR=127.0.0.7") == std::string::npos);
        CHECK(d.relay.wait_for_output("REASON=pending-timeout", 5s));
        CHECK(d.relay.running());
    }

    TEST_CASE(
        "control port: one address holding 4,500 idle connections does not keep an agent "
        "out") {
        TestServer sink(TestServer::Mode::HashReply);
        Deployment d;
        d.make_keys({"agent1"});
        d.limits_extra = "handshake_timeout_ms = 30000\n";
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        std::vector<sp::UniqueFd> idle;
        for (int i = 0; i < 4500; ++i) {
            if (auto fd = connect_to("127.0.0.1", d.control_port, 2s, "127.0.0.3"); fd) {
                idle.push_back(std::move(fd));
            }
        }
        CHECK(idle.size() == 4500);
        CHECK(d.relay.wait_for_output("REASON=handshake-limit", 5s));
        const auto t0 = Clock::now();
        const uint16_t port = free_port();
        d.start_agent(Deployment::service("s", fmt::format("127.0.0.1:{}", port),
                                          fmt::format("127.0.0.1:{}", sink.port())));
        REQUIRE(d.relay.wait_for_output("listener-open", 10s));
        MESSAGE(fmt::format(
            "agent in after {} ms",
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()));
        std::string payload(1 << 16, '\0');
        fill_pattern(5, 0, payload.data(), payload.size());
        REQUIRE(connect_retry("127.0.0.1", port, 5s));
        CHECK(sp::test::exchange(port, payload) == sha256_hex(payload));
    }

    TEST_CASE("control port: a max_sessions the open-file limit cannot back is reported at start") {
        Deployment d;
        d.make_keys({"agent1"});
        d.relay_prefix = {"/usr/bin/prlimit", "--nofile=4096:4096", "--"};
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        CHECK(d.relay.output().find("resource-limit REASON=RLIMIT_NOFILE") != std::string::npos);
    }
}
