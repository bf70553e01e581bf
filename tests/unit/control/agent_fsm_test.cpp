// SPDX-License-Identifier: Apache-2.0
// Protocol doc section 5.2 as a table: one row per (state, input), the state
// after it and the actions, rendered compactly. Backoff delays are random,
// so rows show "Arm(backoff)" and the drift cases check the delays.
#include "control/agent_fsm.hpp"

#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

using namespace sp::control;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kSeed = 7;

Hello hello() {
    Hello h;
    h.agent_name = "mft-1";
    h.software_version = "0.1.0";
    h.pool_size = 4;
    return h;
}

Config config(uint32_t generation = 1) {
    Config c;
    c.generation = generation;
    c.services.push_back(ServiceSpec{"sftp", {"0.0.0.0:22"}, {}, {}, 0, 0});
    return c;
}

std::string_view timer_name(LinkTimer t) {
    switch (t) {
        case LinkTimer::Deadline:
            return "deadline";
        case LinkTimer::Backoff:
            return "backoff";
        case LinkTimer::Stable:
            return "stable";
    }
    return "?";
}

std::string render(const LinkAction& a) {
    struct V {
        std::string operator()(const link_do::StartConnect&) const { return "StartConnect"; }
        std::string operator()(const link_do::StartTls&) const { return "StartTls"; }
        std::string operator()(const link_do::Send& s) const {
            return fmt::format("Send({})", to_string(type_of(s.message)));
        }
        std::string operator()(const link_do::Goodbye& g) const {
            return fmt::format("Goodbye({})", to_string(g.reason));
        }
        std::string operator()(const link_do::Close&) const { return "Close"; }
        std::string operator()(const link_do::ArmTimer& t) const {
            return fmt::format("Arm({})", timer_name(t.timer));
        }
        std::string operator()(const link_do::CancelTimer& t) const {
            return fmt::format("Cancel({})", timer_name(t.timer));
        }
        std::string operator()(const link_do::DialChannels& d) const {
            return fmt::format("Dial({})", d.tokens.size());
        }
        std::string operator()(const link_do::ReportConfigResult&) const { return "Report"; }
        std::string operator()(const link_do::OutboundAnswer& a) const {
            return fmt::format("Outbound({})", a.result.request_id);
        }
        std::string operator()(const link_do::Connected&) const { return "Connected"; }
        std::string operator()(const link_do::Disconnected& d) const {
            return fmt::format("Disconnected({}{})", to_string(d.reason), d.error ? ",error" : "");
        }
    };
    return std::visit(V{}, a);
}

std::string render(const std::vector<LinkAction>& as) {
    std::string out;
    for (const auto& a : as) {
        out += (out.empty() ? "" : " ") + render(a);
    }
    return out;
}

const LinkClock::time_point kT0{};

LinkInput frame(Message m) {
    return link_in::FrameDecoded{std::move(m)};
}

LinkInput ack(uint8_t version = 1, uint32_t heartbeat_ms = 1000) {
    return frame(HelloAck{version, "0.1.0", heartbeat_ms, 42});
}

LinkInput goodbye(GoodbyeReason r) {
    return frame(Goodbye{r, "bye"});
}

// Drives a fresh FSM along the happy path (or into Backoff) to `s`.
AgentLinkFsm at(LinkState s) {
    AgentLinkFsm f(hello(), config(), kSeed);
    const auto go = [&](const LinkInput& in) { (void)f.step(in); };
    if (s == LinkState::Idle) {
        return f;
    }
    go(link_in::Start{});
    if (s == LinkState::Backoff) {
        go(link_in::ConnectFailed{-111, "refused"});
        return f;
    }
    if (s == LinkState::Connecting) {
        return f;
    }
    go(link_in::ConnectOk{});
    if (s == LinkState::Handshaking) {
        return f;
    }
    go(link_in::TlsDone{});
    if (s == LinkState::AwaitAck) {
        return f;
    }
    go(ack());
    return f;
}

struct Row {
    LinkState from;
    const char* what;
    LinkInput input;
    LinkState to;
    const char* actions;
};

Token token(uint8_t b) {
    Token t{};
    t.fill(b);
    return t;
}

const auto kFresh = link_in::Tick{kT0 + 10s, kT0 + 9500ms, kT0 + 9900ms};
const auto kQuietTx = link_in::Tick{kT0 + 10s, kT0 + 9500ms, kT0 + 9s};     // hb 1 s passed
const auto kSilent = link_in::Tick{kT0 + 10s, kT0 + 6900ms, kT0 + 9900ms};  // > 3 x 1 s

using S = LinkState;

}  // namespace

TEST_SUITE("control.agent_fsm") {
    TEST_CASE("agent_fsm: every transition of section 5.2") {
        const std::vector<Row> rows = {
            // Idle: not wanted.
            {S::Idle, "Start", link_in::Start{}, S::Connecting, "Arm(deadline) StartConnect"},
            {S::Idle, "Stop", link_in::Stop{StopReason::Shutdown}, S::Idle, ""},
            {S::Idle, "stale backoff timer", link_in::BackoffElapsed{}, S::Idle, ""},
            {S::Idle, "Tick", kSilent, S::Idle, ""},
            {S::Idle, "stray frame", ack(), S::Idle, ""},
            {S::Idle, "NewConfig", link_in::NewConfig{config(2)}, S::Idle, ""},
            {S::Idle, "drain: remembered for HELLO_ACK", link_in::SetDraining{true}, S::Idle, ""},
            // Connecting.
            {S::Connecting, "connect ok", link_in::ConnectOk{}, S::Handshaking, "StartTls"},
            {S::Connecting, "connect failed", link_in::ConnectFailed{-111, "refused"}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(connect)"},
            {S::Connecting, "10 s deadline", link_in::ConnectDeadline{}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(timeout)"},
            {S::Connecting, "Stop", link_in::Stop{StopReason::Shutdown}, S::Idle,
             "Cancel(deadline) Close"},
            {S::Connecting, "Start again", link_in::Start{}, S::Connecting, ""},
            {S::Connecting, "Tick", kSilent, S::Connecting, ""},
            {S::Connecting, "drain", link_in::SetDraining{true}, S::Connecting, ""},
            // Handshaking.
            {S::Handshaking, "TLS done", link_in::TlsDone{}, S::AwaitAck, "Send(HELLO)"},
            {S::Handshaking, "TLS bad key", link_in::TlsFailed{TlsError::BadKey, "alert"},
             S::Backoff, "Close Cancel(deadline) Arm(backoff) Disconnected(bad-key,error)"},
            {S::Handshaking, "TLS protocol", link_in::TlsFailed{TlsError::Protocol, "no suite"},
             S::Backoff, "Close Cancel(deadline) Arm(backoff) Disconnected(protocol,error)"},
            {S::Handshaking, "10 s deadline", link_in::ConnectDeadline{}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(timeout)"},
            {S::Handshaking, "EOF", link_in::PeerEof{}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(closed)"},
            {S::Handshaking, "write failed", link_in::WriteFailed{"EPIPE"}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(io)"},
            {S::Handshaking, "Stop", link_in::Stop{StopReason::Standby}, S::Idle,
             "Cancel(deadline) Close"},
            {S::Handshaking, "stale connect ok", link_in::ConnectOk{}, S::Handshaking, ""},
            // AwaitAck: HELLO sent.
            {S::AwaitAck, "HELLO_ACK", ack(), S::Ready,
             "Cancel(deadline) Arm(stable) Connected Send(CONFIG)"},
            {S::AwaitAck, "HELLO_ACK of a version we do not speak", ack(2), S::Backoff,
             "Goodbye(version) Close Cancel(deadline) Arm(backoff) Disconnected(version,error)"},
            {S::AwaitAck, "GOODBYE(bad-key)", goodbye(GoodbyeReason::BadKey), S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(bad-key,error)"},
            {S::AwaitAck, "GOODBYE(version)", goodbye(GoodbyeReason::Version), S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(version,error)"},
            {S::AwaitAck, "GOODBYE(not-allowed)", goodbye(GoodbyeReason::NotAllowed), S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(not-allowed)"},
            {S::AwaitAck, "another frame", frame(Heartbeat{1}), S::Backoff,
             "Goodbye(protocol) Close Cancel(deadline) Arm(backoff) Disconnected(protocol,error)"},
            {S::AwaitAck, "decode error",
             link_in::DecodeError{GoodbyeReason::ProtocolError, "bad type"}, S::Backoff,
             "Goodbye(protocol) Close Cancel(deadline) Arm(backoff) Disconnected(protocol,error)"},
            {S::AwaitAck, "frame version byte", link_in::DecodeError{GoodbyeReason::Version, "v9"},
             S::Backoff,
             "Goodbye(version) Close Cancel(deadline) Arm(backoff) Disconnected(version,error)"},
            {S::AwaitAck, "EOF", link_in::PeerEof{}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(closed)"},
            {S::AwaitAck, "write failed", link_in::WriteFailed{"pending bound"}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(io)"},
            {S::AwaitAck, "read failed", link_in::ReadFailed{"reset"}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(io)"},
            {S::AwaitAck, "certificate refused on first read",
             link_in::TlsFailed{TlsError::BadKey, "alert"}, S::Backoff,
             "Close Cancel(deadline) Arm(backoff) Disconnected(bad-key,error)"},
            {S::AwaitAck, "10 s deadline", link_in::ConnectDeadline{}, S::Backoff,
             "Goodbye(timeout) Close Cancel(deadline) Arm(backoff) Disconnected(timeout)"},
            {S::AwaitAck, "Stop for reload", link_in::Stop{StopReason::Reload}, S::Idle,
             "Cancel(deadline) Goodbye(reload) Close"},
            {S::AwaitAck, "Tick", kSilent, S::AwaitAck, ""},
            {S::AwaitAck, "drain: told after HELLO_ACK", link_in::SetDraining{true}, S::AwaitAck,
             ""},
            // Ready.
            {S::Ready, "OPEN_CHANNELS", frame(OpenChannels{{token(1), token(2)}}), S::Ready,
             "Dial(2)"},
            {S::Ready, "CONFIG_RESULT", frame(ConfigResult{1, {}}), S::Ready, "Report"},
            {S::Ready, "HEARTBEAT", frame(Heartbeat{5}), S::Ready, ""},
            {S::Ready, "OUTBOUND_RESULT", frame(OutboundResult{7, {}, 0, {}}), S::Ready,
             "Outbound(7)"},
            {S::Ready, "second HELLO_ACK", ack(), S::Backoff,
             "Goodbye(protocol) Close Cancel(stable) Arm(backoff) Disconnected(protocol,error)"},
            {S::Ready, "agent-direction HELLO", frame(hello()), S::Backoff,
             "Goodbye(protocol) Close Cancel(stable) Arm(backoff) Disconnected(protocol,error)"},
            {S::Ready, "GOODBYE(shutdown)", goodbye(GoodbyeReason::Shutdown), S::Backoff,
             "Close Cancel(stable) Arm(backoff) Disconnected(shutdown)"},
            {S::Ready, "GOODBYE(bad-key) after a relay reload", goodbye(GoodbyeReason::BadKey),
             S::Backoff, "Close Cancel(stable) Arm(backoff) Disconnected(bad-key,error)"},
            {S::Ready, "GOODBYE(replaced)", goodbye(GoodbyeReason::Replaced), S::Backoff,
             "Close Cancel(stable) Arm(backoff) Disconnected(replaced)"},
            {S::Ready, "decode error",
             link_in::DecodeError{GoodbyeReason::ProtocolError, "trailing bytes"}, S::Backoff,
             "Goodbye(protocol) Close Cancel(stable) Arm(backoff) Disconnected(protocol,error)"},
            {S::Ready, "EOF", link_in::PeerEof{}, S::Backoff,
             "Close Cancel(stable) Arm(backoff) Disconnected(closed)"},
            {S::Ready, "a send failed", link_in::WriteFailed{"peer does not read"}, S::Backoff,
             "Close Cancel(stable) Arm(backoff) Disconnected(io)"},
            {S::Ready, "relay silent 3 intervals", kSilent, S::Backoff,
             "Goodbye(timeout) Close Cancel(stable) Arm(backoff) Disconnected(timeout)"},
            {S::Ready, "nothing sent for an interval", kQuietTx, S::Ready, "Send(HEARTBEAT)"},
            {S::Ready, "Tick, all fresh", kFresh, S::Ready, ""},
            {S::Ready, "Ready lasted 30 s", link_in::ReadyStable{}, S::Ready, ""},
            {S::Ready, "reload", link_in::NewConfig{config(2)}, S::Ready, "Send(CONFIG)"},
            {S::Ready, "Stop", link_in::Stop{StopReason::Shutdown}, S::Idle,
             "Cancel(stable) Goodbye(shutdown) Close Disconnected(shutdown)"},
            {S::Ready, "Stop: a primary is back", link_in::Stop{StopReason::Standby}, S::Idle,
             "Cancel(stable) Goodbye(shutdown) Close Disconnected(standby)"},
            {S::Ready, "Stop: relay entry reloaded", link_in::Stop{StopReason::Reload}, S::Idle,
             "Cancel(stable) Goodbye(reload) Close Disconnected(reload)"},
            {S::Ready, "drain", link_in::SetDraining{true}, S::Ready, "Send(AGENT_STATE)"},
            {S::Ready, "resume while not draining", link_in::SetDraining{false}, S::Ready, ""},
            {S::Ready, "AGENT_STATE is agent-direction", frame(AgentState{true}), S::Backoff,
             "Goodbye(protocol) Close Cancel(stable) Arm(backoff) Disconnected(protocol,error)"},
            {S::Ready, "stale deadline", link_in::ConnectDeadline{}, S::Ready, ""},
            {S::Ready, "stale backoff timer", link_in::BackoffElapsed{}, S::Ready, ""},
            // Backoff.
            {S::Backoff, "delay over", link_in::BackoffElapsed{}, S::Connecting,
             "Arm(deadline) StartConnect"},
            {S::Backoff, "Stop", link_in::Stop{StopReason::Standby}, S::Idle, "Cancel(backoff)"},
            {S::Backoff, "Start", link_in::Start{}, S::Backoff, ""},
            {S::Backoff, "stale connect ok", link_in::ConnectOk{}, S::Backoff, ""},
            {S::Backoff, "stale EOF", link_in::PeerEof{}, S::Backoff, ""},
            {S::Backoff, "Tick", kSilent, S::Backoff, ""},
            {S::Backoff, "NewConfig", link_in::NewConfig{config(2)}, S::Backoff, ""},
            {S::Backoff, "drain", link_in::SetDraining{true}, S::Backoff, ""},
        };
        for (const auto& r : rows) {
            CAPTURE(to_string(r.from));
            CAPTURE(r.what);
            auto f = at(r.from);
            REQUIRE(f.state() == r.from);
            const auto out = f.step(r.input);
            CHECK(render(out) == r.actions);
            CHECK(to_string(f.state()) == to_string(r.to));
        }
    }

    TEST_CASE("agent_fsm: a draining agent says so after every HELLO_ACK, resume once") {
        auto f = at(S::AwaitAck);
        CHECK(render(f.step(link_in::SetDraining{true})).empty());
        CHECK(f.draining());
        CHECK(render(f.step(ack())) ==
              "Cancel(deadline) Arm(stable) Connected Send(CONFIG) Send(AGENT_STATE)");
        CHECK(render(f.step(link_in::SetDraining{true})).empty());
        // The relay forgets the state with the connection: a new one is told.
        (void)f.step(link_in::PeerEof{});
        (void)f.step(link_in::BackoffElapsed{});
        (void)f.step(link_in::ConnectOk{});
        (void)f.step(link_in::TlsDone{});
        CHECK(render(f.step(ack())) ==
              "Cancel(deadline) Arm(stable) Connected Send(CONFIG) Send(AGENT_STATE)");
        const auto resumed = f.step(link_in::SetDraining{false});
        REQUIRE(resumed.size() == 1);
        const auto* send = std::get_if<link_do::Send>(resumed.data());
        REQUIRE(send != nullptr);
        CHECK(send->message == Message{AgentState{false}});
        CHECK_FALSE(f.draining());
        CHECK(render(f.step(link_in::SetDraining{false})).empty());
    }

    TEST_CASE("agent_fsm: failures do not reset on HELLO_ACK, only after 30 s of Ready") {
        AgentLinkFsm f(hello(), config(), kSeed);
        (void)f.step(link_in::Start{});
        for (int i = 0; i < 4; ++i) {
            (void)f.step(link_in::ConnectFailed{-111, "refused"});
            (void)f.step(link_in::BackoffElapsed{});
        }
        CHECK(f.failures() == 4);
        (void)f.step(link_in::ConnectOk{});
        (void)f.step(link_in::TlsDone{});
        (void)f.step(ack());
        REQUIRE(f.state() == LinkState::Ready);
        CHECK(f.failures() == 4);  // a relay that drops us at once still backs off
        const auto out = f.step(link_in::PeerEof{});
        const auto* arm = std::get_if<link_do::ArmTimer>(&out[2]);
        REQUIRE(arm != nullptr);
        CHECK(arm->delay >= 4s);  // d = 0.5 s x 2^4 = 8 s, drawn in [4 s, 8 s]

        (void)f.step(link_in::BackoffElapsed{});
        (void)f.step(link_in::ConnectOk{});
        (void)f.step(link_in::TlsDone{});
        (void)f.step(ack());
        (void)f.step(link_in::ReadyStable{});
        CHECK(f.failures() == 0);
        const auto again = f.step(link_in::PeerEof{});
        const auto* arm2 = std::get_if<link_do::ArmTimer>(&again[2]);
        REQUIRE(arm2 != nullptr);
        CHECK(arm2->delay <= 500ms);
    }

    TEST_CASE("agent_fsm: bad key and version jump straight to the 30 s cap") {
        const std::vector<std::pair<const char*, std::pair<LinkState, LinkInput>>> cases = {
            {"GOODBYE(bad-key)", {S::AwaitAck, goodbye(GoodbyeReason::BadKey)}},
            {"GOODBYE(version)", {S::AwaitAck, goodbye(GoodbyeReason::Version)}},
            {"TLS bad key", {S::Handshaking, link_in::TlsFailed{TlsError::BadKey, "alert"}}},
            {"HELLO_ACK version", {S::AwaitAck, ack(9)}},
        };
        for (const auto& row : cases) {
            CAPTURE(row.first);
            auto f = at(row.second.first);
            REQUIRE(f.failures() == 0);
            const auto out = f.step(row.second.second);
            bool armed = false;
            for (const auto& a : out) {
                if (const auto* t = std::get_if<link_do::ArmTimer>(&a)) {
                    CHECK(t->timer == LinkTimer::Backoff);
                    CHECK(t->delay >= 15s);
                    CHECK(t->delay <= 30s);
                    armed = true;
                }
            }
            CHECK(armed);
        }
        // Other failures start small.
        auto f = at(S::Connecting);
        const auto out = f.step(link_in::ConnectFailed{-111, "refused"});
        CHECK(std::get<link_do::ArmTimer>(out[2]).delay <= 500ms);
    }

    TEST_CASE("agent_fsm: a silent relay gets GOODBYE(timeout) before the close") {
        auto f = at(S::Ready);
        const auto out = f.step(kSilent);
        REQUIRE(out.size() >= 2);
        const auto* g = std::get_if<link_do::Goodbye>(&out[0]);
        REQUIRE(g != nullptr);
        CHECK(g->reason == GoodbyeReason::Timeout);
        CHECK(std::holds_alternative<link_do::Close>(out[1]));
    }

    TEST_CASE("agent_fsm: the heartbeat interval comes from HELLO_ACK, 0 meaning the default") {
        auto f = at(S::AwaitAck);
        (void)f.step(ack(1, 0));
        CHECK(f.heartbeat_ms() == kDefaultHeartbeatMs);
        auto g = at(S::AwaitAck);
        (void)g.step(ack(1, 5));
        CHECK(g.heartbeat_ms() == kMinHeartbeatMs);
        // Silence is judged against the agreed interval.
        CHECK(render(g.step(link_in::Tick{kT0 + 1000ms, kT0 + 650ms, kT0 + 1000ms})) ==
              "Goodbye(timeout) Close Cancel(stable) Arm(backoff) Disconnected(timeout)");
    }

    TEST_CASE("agent_fsm: an unreachable relay logs the first failure of a series only") {
        AgentLinkFsm f(hello(), config(), kSeed);
        (void)f.step(link_in::Start{});
        CHECK(render(f.step(link_in::ConnectFailed{-111, "refused"})) ==
              "Close Cancel(deadline) Arm(backoff) Disconnected(connect)");
        (void)f.step(link_in::BackoffElapsed{});
        CHECK(render(f.step(link_in::ConnectFailed{-111, "refused"})) ==
              "Close Cancel(deadline) Arm(backoff)");
        (void)f.step(link_in::BackoffElapsed{});
        // Errors an operator must fix are logged every time.
        (void)f.step(link_in::ConnectOk{});
        CHECK(render(f.step(link_in::TlsFailed{TlsError::BadKey, "x"})) ==
              "Close Cancel(deadline) Arm(backoff) Disconnected(bad-key,error)");
    }

    TEST_CASE("agent_fsm: HELLO carries the agent's name and pool, CONFIG the latest reload") {
        auto f = at(S::Handshaking);
        const auto out = f.step(link_in::TlsDone{});
        REQUIRE(out.size() == 1);
        const auto& h = std::get<Hello>(std::get<link_do::Send>(out[0]).message);
        CHECK(h.agent_name == "mft-1");
        CHECK(h.pool_size == 4);
        (void)f.step(link_in::NewConfig{config(7)});  // reload while waiting for HELLO_ACK
        const auto ready = f.step(ack());
        const auto& c = std::get<Config>(std::get<link_do::Send>(ready.back()).message);
        CHECK(c.generation == 7);
    }

    TEST_CASE("agent_fsm: a Stop then Start connects at once, without the old timer") {
        auto f = at(S::Backoff);
        CHECK(render(f.step(link_in::Stop{StopReason::Standby})) == "Cancel(backoff)");
        CHECK(render(f.step(link_in::BackoffElapsed{})) == "");
        CHECK(render(f.step(link_in::Start{})) == "Arm(deadline) StartConnect");
    }

    TEST_CASE("agent_fsm: reasons are spelled as SPEC REASON values") {
        const std::vector<std::pair<LinkDown, std::string_view>> names = {
            {LinkDown::Shutdown, "shutdown"},
            {LinkDown::Reload, "reload"},
            {LinkDown::BadKey, "bad-key"},
            {LinkDown::Protocol, "protocol"},
            {LinkDown::Version, "version"},
            {LinkDown::Timeout, "timeout"},
            {LinkDown::Replaced, "replaced"},
            {LinkDown::NotAllowed, "not-allowed"},
            {LinkDown::Internal, "internal"},
            {LinkDown::Standby, "standby"},
            {LinkDown::Connect, "connect"},
            {LinkDown::Closed, "closed"},
            {LinkDown::Io, "io"},
        };
        std::set<std::string_view> seen;
        for (const auto& [r, name] : names) {
            CHECK(to_string(r) == name);
            seen.insert(to_string(r));
        }
        CHECK(seen.size() == names.size());
        // A relay GOODBYE reason keeps its wire spelling in the event.
        for (uint16_t v = 1; v <= kMaxGoodbyeReason; ++v) {
            const auto g = static_cast<GoodbyeReason>(v);
            auto f = at(S::Ready);
            const auto out = f.step(goodbye(g));
            const auto& d = std::get<link_do::Disconnected>(out.back());
            CHECK(to_string(d.reason) == to_string(g));
            CHECK(d.by_relay);
        }
    }
}

TEST_SUITE("control.backoff") {
    TEST_CASE("backoff: grows, stays within [d/2, d], caps and resets") {
        Backoff b(500ms, 30s, 42);
        auto expect = 500ms;
        for (int i = 0; i < 12; ++i) {
            const auto d = b.next();
            CHECK(d >= expect / 2);
            CHECK(d <= expect);
            expect = std::min<std::chrono::milliseconds>(expect * 2, 30s);
        }
        CHECK(b.next() <= 30s);
        b.reset();
        CHECK(b.next() <= 500ms);
    }

    TEST_CASE("backoff: max_out draws the next delay at the cap") {
        Backoff b(500ms, 30s, 42);
        b.max_out();
        const auto d = b.next();
        CHECK(d >= 15s);
        CHECK(d <= 30s);
    }

    TEST_CASE("backoff: different seeds spread out") {
        std::set<int64_t> seen;
        for (uint64_t seed = 1; seed <= 20; ++seed) {
            Backoff b(1000ms, 30s, seed * 7919);
            (void)b.next();
            seen.insert(b.next().count());
        }
        CHECK(seen.size() > 10);
    }
}
