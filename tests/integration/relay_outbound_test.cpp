// SPDX-License-Identifier: Apache-2.0
// The relay's half of the forward proxy (control-protocol.md sections 9 and
// 10), against a test program playing the agent: OUTBOUND_REQUEST on its
// control channel, OUTBOUND_RESULT back, a data channel dialled with the
// token, the binding header read, and bytes checked both ways by SHA-256
// against a server on another loopback address. Then the refusals:
// not allowed, a name resolving outside the allow list, connect refused,
// the per-agent limit, and a token nobody redeems.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

// Ports outside the kernel's ephemeral range (32768-60999), so nothing the
// kernel hands out for a connect takes them: 61000 + a per-process offset.
uint16_t fixed_port(const char* host, unsigned slot) {
    const unsigned pid = static_cast<unsigned>(::getpid());
    for (unsigned i = 0; i < 40; ++i) {
        const auto p = static_cast<uint16_t>(61000 + (pid * 4 + slot + i * 4) % 4000);
        if (sp::test::refused(host, p)) {
            return p;
        }
    }
    return 0;
}

// A control channel to the relay, driven by hand: the agent side of the
// forward proxy.
class TestAgent {
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
                return send(control::Hello{1, 1, "outbound-agent", "0.0.0", 0, 5000}) &&
                       wait_for<control::HelloAck>(5s).has_value();
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

    /// The first frame of type T within `t` (others are dropped).
    template <class T>
    std::optional<T> wait_for(std::chrono::milliseconds t) {
        const auto until = Clock::now() + t;
        while (Clock::now() < until) {
            for (auto& m : pending_) {
                if (auto* x = std::get_if<T>(&m)) {
                    T out = std::move(*x);
                    pending_.clear();
                    return out;
                }
            }
            pending_.clear();
            if (wait_ready(peer_->fd(), POLLIN, 100ms)) {
                const auto r = peer_->read_frames([&](control::Message&& m) {
                    pending_.push_back(std::move(m));
                    return true;
                });
                if (r.status != control::FramedPeer::ReadStatus::Open) {
                    return std::nullopt;
                }
            }
        }
        return std::nullopt;
    }

    /// OUTBOUND_REQUEST, then its OUTBOUND_RESULT (nullopt: none in 15 s).
    std::optional<control::OutboundResult> request(uint32_t id, const std::string& host,
                                                   uint16_t port) {
        if (!send(control::OutboundRequest{id, host, port})) {
            return std::nullopt;
        }
        auto r = wait_for<control::OutboundResult>(15s);
        if (r) {
            CHECK(r->request_id == id);
        }
        return r;
    }

private:
    std::optional<control::FramedPeer> peer_;
    std::vector<control::Message> pending_;
};

struct Channel {
    sp::UniqueFd fd;
    control::Binding binding;
};

// Dials a data channel with `token` and reads its binding header.
std::optional<Channel> dial(uint16_t control_port, const control::Token& token) {
    auto fd = connect_to("127.0.0.1", control_port, 2s);
    if (!fd) {
        return std::nullopt;
    }
    const auto hello = control::encode_channel_hello(token);
    if (!send_all(fd.get(), hello.data(), hello.size())) {
        return std::nullopt;
    }
    std::vector<uint8_t> in;
    for (int i = 0; i < 50; ++i) {
        const auto r = control::decode_binding(in);
        if (r.status == control::DecodeStatus::Ok) {
            if (r.consumed != in.size()) {
                return std::nullopt;  // the partner spoke first: not expected here
            }
            return Channel{std::move(fd), r.binding};
        }
        if (r.status == control::DecodeStatus::Error || !wait_ready(fd.get(), POLLIN, 100ms)) {
            continue;
        }
        uint8_t b[512];
        const ssize_t n = ::recv(fd.get(), b, sizeof b, 0);
        if (n <= 0) {
            return std::nullopt;
        }
        in.insert(in.end(), b, b + n);
    }
    return std::nullopt;
}

// Sends `payload` on `fd` from a thread, half-closes, and returns the hex
// SHA-256 of all that comes back until EOF.
std::string echo_through(int fd, const std::string& payload) {
    set_timeouts(fd, 20s);
    std::thread tx([&] {
        (void)send_all(fd, payload.data(), payload.size());
        ::shutdown(fd, SHUT_WR);
    });
    std::string back = recv_all(fd, payload.size() + 1);
    tx.join();
    return sha256_hex(back);
}

Process start_relay(Deployment& d) {
    const auto cfg = d.write_relay_config();
    return Process::start(
        {relay_bin(), "-c", cfg, "--log-target", "stderr", "--log-level", "debug"},
        d.dir.path() + "/relay.log");
}

}  // namespace

TEST_SUITE("integration.relay_outbound") {
    TEST_CASE("relay outbound: a request is connected, spliced byte-exact and refused as told") {
        const uint16_t echo_port = fixed_port("127.0.0.5", 0);
        const uint16_t dead_port = fixed_port("127.0.0.7", 1);
        REQUIRE(echo_port != 0);
        REQUIRE(dead_port != 0);
        TestServer partner(TestServer::Mode::Echo, "127.0.0.5", echo_port);
        REQUIRE(partner.port() == echo_port);

        Deployment d;
        d.control_port = fixed_port("127.0.0.1", 2);
        REQUIRE(d.control_port != 0);
        d.make_keys({"agent1"});
        // [limits] is the file's last table: [outbound] follows it.
        d.limits_extra = fmt::format(
            "max_outbound_sessions_per_agent = 1\nhandshake_timeout_ms = 1500\n"
            "[outbound]\nallow = [\"127.0.0.5/32:{}\", \"127.0.0.7:{}\"]\n"
            "connect_timeout_ms = 3000\n",
            echo_port, dead_port);
        d.relay = start_relay(d);
        REQUIRE(d.relay.wait_for_output(" started ", 10s));

        TestAgent a;
        REQUIRE(a.connect(d.control_port, d.agent_key("agent1")));

        // Not in the allow list: refused before any DNS or connect.
        auto r = a.request(1, "127.0.0.6", echo_port);
        REQUIRE(r);
        CHECK(r->status == control::OutboundStatus::Denied);
        CHECK(d.relay.wait_for_output("REASON=not-allowed", 5s));
        // A name the CIDR rule could admit, resolving (localhost) only
        // outside it: refused after resolving, no rebinding escape.
        r = a.request(2, "localhost", echo_port);
        REQUIRE(r);
        CHECK(r->status == control::OutboundStatus::Denied);
        CHECK(d.relay.wait_for_output("localhost resolves only to addresses not in", 5s));
        // Allowed, nothing listening: connect-failed with the errno.
        r = a.request(3, "127.0.0.7", dead_port);
        REQUIRE(r);
        CHECK(r->status == control::OutboundStatus::ConnectFailed);
        CHECK(r->error == ECONNREFUSED);
        CHECK(d.relay.wait_for_output("REASON=connect-failed", 5s));

        // Allowed and listening: a token, a data channel, a spliced session.
        r = a.request(4, "127.0.0.5", echo_port);
        REQUIRE(r);
        REQUIRE(r->status == control::OutboundStatus::Ok);
        auto ch = dial(d.control_port, r->token);
        REQUIRE(ch);
        CHECK(ch->binding.service.empty());
        CHECK(ch->binding.client_addr == fmt::format("127.0.0.5:{}", echo_port));
        CHECK_FALSE(ch->binding.listen_addr.empty());
        CHECK(d.relay.wait_for_output("outbound-open", 5s));

        // The per-agent limit (1) holds while that session is open.
        auto limited = a.request(5, "127.0.0.5", echo_port);
        REQUIRE(limited);
        CHECK(limited->status == control::OutboundStatus::Limit);

        std::string payload(8 << 20, '\0');
        fill_pattern(11, 0, payload.data(), payload.size());
        CHECK(echo_through(ch->fd.get(), payload) == sha256_hex(payload));
        ch->fd = sp::UniqueFd();
        REQUIRE(d.relay.wait_for_output("outbound-close", 5s));
        const std::string log = d.relay.output();
        const auto sid_at = log.find("outbound-open SESSION_ID=");
        REQUIRE(sid_at != std::string::npos);
        const std::string sid = log.substr(sid_at + 25, 16);
        CHECK(log.find(fmt::format("outbound-close SESSION_ID={}", sid)) != std::string::npos);
        CHECK(log.find(fmt::format("BYTES_UP={} BYTES_DOWN={}", payload.size(), payload.size())) !=
              std::string::npos);

        // The slot is given back once the session ended (by message, so
        // asked a few times).
        std::optional<control::OutboundResult> again;
        for (int i = 0; i < 50; ++i) {
            again = a.request(static_cast<uint32_t>(10 + i), "127.0.0.5", echo_port);
            if (!again || again->status != control::OutboundStatus::Limit) {
                break;
            }
            std::this_thread::sleep_for(100ms);
        }
        REQUIRE(again);
        REQUIRE(again->status == control::OutboundStatus::Ok);
        // Nobody dials for it: after 2 x handshake_timeout_ms the socket is
        // closed and the slot freed.
        CHECK(d.relay.wait_for_output("REASON=timeout", 10s));
        std::optional<control::OutboundResult> after;
        for (int i = 0; i < 50; ++i) {
            after = a.request(static_cast<uint32_t>(100 + i), "127.0.0.5", echo_port);
            if (!after || after->status != control::OutboundStatus::Limit) {
                break;
            }
            std::this_thread::sleep_for(100ms);
        }
        REQUIRE(after);
        CHECK(after->status == control::OutboundStatus::Ok);
        // The expired token is refused like any unknown one.
        CHECK_FALSE(dial(d.control_port, again->token));

        // An agent that goes away voids its tokens and frees their slots at
        // once (well before they would expire): the same name connecting
        // again may ask straight away.
        const size_t expired = count_occurrences(d.relay.output(), "REASON=timeout");
        a = TestAgent();
        TestAgent b;
        REQUIRE(b.connect(d.control_port, d.agent_key("agent1")));
        std::optional<control::OutboundResult> fresh;
        for (int i = 0; i < 20; ++i) {
            fresh = b.request(static_cast<uint32_t>(200 + i), "127.0.0.5", echo_port);
            if (!fresh || fresh->status != control::OutboundStatus::Limit) {
                break;
            }
            std::this_thread::sleep_for(50ms);
        }
        REQUIRE(fresh);
        CHECK(fresh->status == control::OutboundStatus::Ok);
        CHECK(count_occurrences(d.relay.output(), "REASON=timeout") == expired);
        CHECK_FALSE(dial(d.control_port, after->token));

        // That session runs and ends; then the operator drains: no new
        // outbound sessions either (limit: another relay may take it).
        auto second = dial(d.control_port, fresh->token);
        REQUIRE(second);
        CHECK(echo_through(second->fd.get(), "ping") == sha256_hex("ping"));
        second->fd = sp::UniqueFd();
        for (int i = 0; i < 50 && count_occurrences(d.relay.output(), " outbound-close ") < 2;
             ++i) {
            std::this_thread::sleep_for(100ms);
        }
        REQUIRE(d.relay_query("drain"));
        bool drained = false;
        for (int i = 0; i < 30 && !drained; ++i) {
            auto r2 = b.request(static_cast<uint32_t>(300 + i), "127.0.0.5", echo_port);
            REQUIRE(r2);
            CHECK(r2->status == control::OutboundStatus::Limit);
            drained = d.relay.output().find("refused: relay draining") != std::string::npos;
            std::this_thread::sleep_for(100ms);
        }
        CHECK(drained);
        REQUIRE(d.relay_query("resume"));

        // The metrics count what happened: two sessions, each refusal.
        const auto m = d.relay_query("metrics");
        REQUIRE(m);
        const std::string text = (*m)["text"].get<std::string>();
        CHECK(text.find("sallyport_outbound_sessions_total{agent=\"outbound-agent\"} 2\n") !=
              std::string::npos);
        CHECK(text.find(fmt::format("sallyport_outbound_bytes_total{{agent=\"outbound-agent\","
                                    "direction=\"up\"}} {}\n",
                                    payload.size() + 4)) != std::string::npos);
        CHECK(text.find("sallyport_outbound_rejections_total{reason=\"not-allowed\"} 2\n") !=
              std::string::npos);
        CHECK(text.find("sallyport_outbound_rejections_total{reason=\"connect-failed\"} 1\n") !=
              std::string::npos);
        CHECK(text.find("sallyport_outbound_rejections_total{reason=\"timeout\"} 1\n") !=
              std::string::npos);
        CHECK(d.relay.running());
        const std::string all = d.relay.output();
        for (size_t at = all.find(" outbound-"); at != std::string::npos;
             at = all.find(" outbound-", all.find('\n', at))) {
            const size_t bol = all.rfind('\n', at) + 1;
            MESSAGE(all.substr(bol, all.find('\n', at) - bol));
            if (all.find('\n', at) == std::string::npos) {
                break;
            }
        }
    }
}
