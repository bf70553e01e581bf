// SPDX-License-Identifier: Apache-2.0
// control-protocol.md section 5.1 as a table: every transition is a row
// (state, input) -> (state, actions), written from the document.
#include "control/relay_fsm.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "control/agent_directory.hpp"

using namespace sp::control;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

template <class... Fs>
struct Overloaded : Fs... {
    using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

std::string event_name(CloseEvent e) {
    switch (e) {
        case CloseEvent::None:
            return "none";
        case CloseEvent::AgentRejected:
            return "agent-rejected";
        case CloseEvent::AgentDisconnected:
            return "agent-disconnected";
    }
    return "?";
}

std::string describe_message(const Message& m) {
    if (const auto* a = std::get_if<HelloAck>(&m)) {
        return fmt::format("HELLO_ACK v{} hb={} id={}", a->version, a->heartbeat_ms,
                           a->connection_id);
    }
    if (const auto* o = std::get_if<OutboundResult>(&m)) {
        return fmt::format("OUTBOUND_RESULT {} {}", o->request_id, to_string(o->status));
    }
    return std::string(to_string(type_of(m)));
}

// One action as a short, stable string, so a row reads like the document.
std::string describe(const RelayAction& a) {
    return std::visit(
        Overloaded{
            [](const relay_out::Send& s) { return "Send(" + describe_message(s.message) + ")"; },
            [](const relay_out::Goodbye& g) {
                return fmt::format("Goodbye({})", to_string(g.reason));
            },
            [](const relay_out::Claim& c) {
                return fmt::format("Claim({},{})", c.name, c.identity);
            },
            [](const relay_out::Connected& c) {
                return fmt::format("Connected({},{},pool={},hb={})", c.name, c.identity, c.pool,
                                   c.heartbeat_ms);
            },
            [](const relay_out::ApplyConfig& c) {
                return fmt::format("ApplyConfig(gen={})", c.config.generation);
            },
            [](const relay_out::IssueTokens& t) { return fmt::format("IssueTokens({})", t.count); },
            [](const relay_out::ReportBackendFailed& b) {
                return fmt::format("ReportBackendFailed({})", b.failure.session_id);
            },
            [](const relay_out::SetDraining& d) {
                return fmt::format("SetDraining({})", d.draining);
            },
            [](const relay_out::StartOutbound& o) {
                return fmt::format("StartOutbound({},{}:{})", o.request.request_id, o.request.host,
                                   o.request.port);
            },
            [](const relay_out::Close& c) {
                return fmt::format("Close({},{}{})", event_name(c.event), to_string(c.reason),
                                   c.was_ready ? ",ready" : "");
            },
        },
        a);
}

std::vector<std::string> describe(const std::vector<RelayAction>& actions) {
    std::vector<std::string> out;
    for (const auto& a : actions) {
        out.push_back(describe(a));
    }
    return out;
}

Hello hello(std::string name = "mft-1", uint16_t pool = 8, uint32_t hb = 5000, uint8_t lo = 1,
            uint8_t hi = 1) {
    return Hello{lo, hi, std::move(name), "0.1.0", pool, hb};
}

constexpr uint64_t kConn = 7;

RelayFsm make() {
    return RelayFsm({kConn, "9.9.9"});
}

// Drives a fresh machine into `s` along the document's main path.
RelayFsm in_state(RelayState s) {
    RelayFsm f = make();
    if (s == RelayState::AwaitTls) {
        return f;
    }
    (void)f.on(relay_in::TlsDone{"k1"});
    if (s == RelayState::AwaitHello) {
        return f;
    }
    (void)f.on(relay_in::FrameDecoded{hello()});
    (void)f.on(relay_in::ClaimGranted{});
    if (s == RelayState::Ready) {
        return f;
    }
    if (s == RelayState::Closing) {
        (void)f.on(relay_in::Shutdown{});
        return f;
    }
    (void)f.on(relay_in::PeerEof{});
    return f;
}

const Clock::time_point kT0 = Clock::time_point{} + 1000h;

struct Row {
    const char* what;
    RelayState from;
    std::vector<RelayInput> inputs;  // fed in order; the last one's actions are checked
    RelayState to;
    std::vector<std::string> actions;
};

void check_rows(const std::vector<Row>& rows) {
    for (const auto& r : rows) {
        const std::string what = r.what;
        CAPTURE(what);
        RelayFsm f = in_state(r.from);
        REQUIRE(f.state() == r.from);
        std::vector<RelayAction> last;
        for (const auto& in : r.inputs) {
            last = f.on(in);
        }
        CHECK(to_string(f.state()) == to_string(r.to));
        CHECK(fmt::format("{}", fmt::join(describe(last), " ")) ==
              fmt::format("{}", fmt::join(r.actions, " ")));
    }
}

using S = RelayState;
using V = std::vector<std::string>;
using I = std::vector<RelayInput>;

}  // namespace

TEST_SUITE("control.relay_fsm") {
    TEST_CASE("relay_fsm: AwaitTls rows") {
        check_rows({
            {"handshake done", S::AwaitTls, I{relay_in::TlsDone{"k1"}}, S::AwaitHello, V{}},
            {"bad key", S::AwaitTls,
             I{relay_in::TlsFailed{TlsFailure::BadKey, "TLS handshake: decrypt error"}}, S::Closed,
             V{"Close(agent-rejected,bad-key)"}},
            {"not TLS 1.3", S::AwaitTls,
             I{relay_in::TlsFailed{TlsFailure::Protocol, "TLS handshake: version"}}, S::Closed,
             V{"Close(agent-rejected,protocol)"}},
            {"socket error mid-handshake", S::AwaitTls,
             I{relay_in::TlsFailed{TlsFailure::Other, "reset"}}, S::Closed,
             V{"Close(agent-rejected,protocol)"}},
            {"peer closed", S::AwaitTls, I{relay_in::PeerEof{}}, S::Closed,
             V{"Close(agent-rejected,protocol)"}},
            {"handshake timeout: nothing to say GOODBYE with", S::AwaitTls,
             I{relay_in::HandshakeTimeout{}}, S::Closed,
             V{"Close(agent-rejected,handshake-timeout)"}},
            {"authentication changed by reload: closed", S::AwaitTls, I{relay_in::Reauthenticate{}},
             S::Closed, V{"Close(none,reload)"}},
            {"shutdown: silent", S::AwaitTls, I{relay_in::Shutdown{}}, S::Closed,
             V{"Close(none,shutdown)"}},
            {"tick ignored", S::AwaitTls, I{relay_in::Tick{kT0, kT0 - 1h, kT0 - 1h}}, S::AwaitTls,
             V{}},
            {"key revoked before authentication: the next handshake decides", S::AwaitTls,
             I{relay_in::KeyRevoked{}}, S::AwaitTls, V{}},
            {"address denied during the TLS handshake: closed, no goodbye", S::AwaitTls,
             I{relay_in::AddressDenied{}}, S::Closed, V{"Close(agent-rejected,not-allowed)"}},
        });
    }

    TEST_CASE("relay_fsm: AwaitHello rows") {
        check_rows({
            {"HELLO ok: claim the name first", S::AwaitHello, I{relay_in::FrameDecoded{hello()}},
             S::AwaitHello, V{"Claim(mft-1,k1)"}},
            {"claim granted: HELLO_ACK, Connected, ONE OPEN_CHANNELS of pool tokens", S::AwaitHello,
             I{relay_in::FrameDecoded{hello()}, relay_in::ClaimGranted{}}, S::Ready,
             V{"Send(HELLO_ACK v1 hb=5000 id=7)", "Connected(mft-1,k1,pool=8,hb=5000)",
               "IssueTokens(8)"}},
            {"pool 0: no OPEN_CHANNELS", S::AwaitHello,
             I{relay_in::FrameDecoded{hello("a", 0)}, relay_in::ClaimGranted{}}, S::Ready,
             V{"Send(HELLO_ACK v1 hb=5000 id=7)", "Connected(a,k1,pool=0,hb=5000)"}},
            {"pool above kMaxTokens: one frame of kMaxTokens", S::AwaitHello,
             I{relay_in::FrameDecoded{hello("a", 5000)}, relay_in::ClaimGranted{}}, S::Ready,
             V{"Send(HELLO_ACK v1 hb=5000 id=7)", "Connected(a,k1,pool=5000,hb=5000)",
               "IssueTokens(1024)"}},
            {"heartbeat 0 means the default 5000, not the minimum", S::AwaitHello,
             I{relay_in::FrameDecoded{hello("a", 1, 0)}, relay_in::ClaimGranted{}}, S::Ready,
             V{"Send(HELLO_ACK v1 hb=5000 id=7)", "Connected(a,k1,pool=1,hb=5000)",
               "IssueTokens(1)"}},
            {"heartbeat capped at kMaxHeartbeatMs (30 s)", S::AwaitHello,
             I{relay_in::FrameDecoded{hello("a", 1, 600000)}, relay_in::ClaimGranted{}}, S::Ready,
             V{"Send(HELLO_ACK v1 hb=30000 id=7)", "Connected(a,k1,pool=1,hb=30000)",
               "IssueTokens(1)"}},
            {"heartbeat raised to kMinHeartbeatMs", S::AwaitHello,
             I{relay_in::FrameDecoded{hello("a", 1, 1)}, relay_in::ClaimGranted{}}, S::Ready,
             V{"Send(HELLO_ACK v1 hb=100 id=7)", "Connected(a,k1,pool=1,hb=100)",
               "IssueTokens(1)"}},
            {"version ranges overlap: highest common", S::AwaitHello,
             I{relay_in::FrameDecoded{hello("a", 0, 5000, 1, 9)}, relay_in::ClaimGranted{}},
             S::Ready, V{"Send(HELLO_ACK v1 hb=5000 id=7)", "Connected(a,k1,pool=0,hb=5000)"}},
            {"no common version", S::AwaitHello,
             I{relay_in::FrameDecoded{hello("a", 0, 5000, 2, 3)}}, S::Closing,
             V{"Goodbye(version)", "Close(agent-rejected,version)"}},
            {"name conflict: refused, GOODBYE(not-allowed)", S::AwaitHello,
             I{relay_in::FrameDecoded{hello()}, relay_in::NameConflict{}}, S::Closing,
             V{"Goodbye(not-allowed)", "Close(agent-rejected,name-conflict)"}},
            {"empty name", S::AwaitHello, I{relay_in::FrameDecoded{hello("")}}, S::Closing,
             V{"Goodbye(protocol)", "Close(agent-rejected,protocol)"}},
            {"non-printable name", S::AwaitHello, I{relay_in::FrameDecoded{hello("a\nb")}},
             S::Closing, V{"Goodbye(protocol)", "Close(agent-rejected,protocol)"}},
            {"name with a space", S::AwaitHello, I{relay_in::FrameDecoded{hello("mft 1")}},
             S::Closing, V{"Goodbye(protocol)", "Close(agent-rejected,protocol)"}},
            {"65-character name", S::AwaitHello,
             I{relay_in::FrameDecoded{hello(std::string(65, 'a'))}}, S::Closing,
             V{"Goodbye(protocol)", "Close(agent-rejected,protocol)"}},
            {"64-character name is fine", S::AwaitHello,
             I{relay_in::FrameDecoded{hello(std::string(64, 'a'))}}, S::AwaitHello,
             V{"Claim(" + std::string(64, 'a') + ",k1)"}},
            {"another frame first", S::AwaitHello, I{relay_in::FrameDecoded{Config{1, {}}}},
             S::Closing, V{"Goodbye(protocol)", "Close(agent-rejected,protocol)"}},
            {"AGENT_STATE before HELLO", S::AwaitHello, I{relay_in::FrameDecoded{AgentState{true}}},
             S::Closing, V{"Goodbye(protocol)", "Close(agent-rejected,protocol)"}},
            {"second HELLO while the claim is pending", S::AwaitHello,
             I{relay_in::FrameDecoded{hello()}, relay_in::FrameDecoded{hello()}}, S::Closing,
             V{"Goodbye(protocol)", "Close(agent-rejected,protocol)"}},
            {"GOODBYE before HELLO: closed quietly", S::AwaitHello,
             I{relay_in::FrameDecoded{Goodbye{GoodbyeReason::Shutdown, "bye"}}}, S::Closed,
             V{"Close(none,shutdown)"}},
            {"decode error", S::AwaitHello,
             I{relay_in::DecodeError{GoodbyeReason::ProtocolError, "bad"}}, S::Closing,
             V{"Goodbye(protocol)", "Close(agent-rejected,protocol)"}},
            {"wrong version byte", S::AwaitHello,
             I{relay_in::DecodeError{GoodbyeReason::Version, "v2"}}, S::Closing,
             V{"Goodbye(version)", "Close(agent-rejected,version)"}},
            {"handshake timeout: TLS is up, so GOODBYE(timeout)", S::AwaitHello,
             I{relay_in::HandshakeTimeout{}}, S::Closing,
             V{"Goodbye(timeout)", "Close(agent-rejected,handshake-timeout)"}},
            {"peer closed", S::AwaitHello, I{relay_in::PeerEof{}}, S::Closed,
             V{"Close(agent-rejected,protocol)"}},
            {"write failed", S::AwaitHello, I{relay_in::WriteFailed{"EPIPE"}}, S::Closed,
             V{"Close(agent-rejected,protocol)"}},
            {"key revoked", S::AwaitHello, I{relay_in::KeyRevoked{}}, S::Closing,
             V{"Goodbye(bad-key)", "Close(agent-rejected,bad-key)"}},
            {"address denied by reload", S::AwaitHello, I{relay_in::AddressDenied{}}, S::Closing,
             V{"Goodbye(not-allowed)", "Close(agent-rejected,not-allowed)"}},
            {"shutdown", S::AwaitHello, I{relay_in::Shutdown{}}, S::Closing,
             V{"Goodbye(shutdown)", "Close(none,shutdown)"}},
            {"upgrade handed over", S::AwaitHello, I{relay_in::Shutdown{true}}, S::Closing,
             V{"Goodbye(reload)", "Close(none,shutdown)"}},
            {"authentication changed by reload", S::AwaitHello, I{relay_in::Reauthenticate{}},
             S::Closing, V{"Goodbye(reload)", "Close(agent-rejected,reload)"}},
            {"unsolicited claim answer ignored", S::AwaitHello, I{relay_in::ClaimGranted{}},
             S::AwaitHello, V{}},
            {"replaced before Ready cannot happen: ignored", S::AwaitHello, I{relay_in::Replaced{}},
             S::AwaitHello, V{}},
        });
    }

    TEST_CASE("relay_fsm: Ready rows") {
        check_rows({
            {"CONFIG: apply and answer; no tokens per CONFIG", S::Ready,
             I{relay_in::FrameDecoded{Config{3, {}}}}, S::Ready, V{"ApplyConfig(gen=3)"}},
            {"a second CONFIG likewise", S::Ready,
             I{relay_in::FrameDecoded{Config{3, {}}}, relay_in::FrameDecoded{Config{4, {}}}},
             S::Ready, V{"ApplyConfig(gen=4)"}},
            {"HEARTBEAT: nothing to do", S::Ready, I{relay_in::FrameDecoded{Heartbeat{1}}},
             S::Ready, V{}},
            {"BACKEND_FAILED: reported", S::Ready,
             I{relay_in::FrameDecoded{BackendFailed{42, 111, "10.0.0.1:22"}}}, S::Ready,
             V{"ReportBackendFailed(42)"}},
            {"AGENT_STATE draining: the workers are told", S::Ready,
             I{relay_in::FrameDecoded{AgentState{true}}}, S::Ready, V{"SetDraining(true)"}},
            {"AGENT_STATE repeated: nothing changes", S::Ready,
             I{relay_in::FrameDecoded{AgentState{true}}, relay_in::FrameDecoded{AgentState{true}}},
             S::Ready, V{}},
            {"AGENT_STATE resumed after a drain", S::Ready,
             I{relay_in::FrameDecoded{AgentState{true}}, relay_in::FrameDecoded{AgentState{false}}},
             S::Ready, V{"SetDraining(false)"}},
            {"AGENT_STATE not draining on a fresh connection: nothing", S::Ready,
             I{relay_in::FrameDecoded{AgentState{false}}}, S::Ready, V{}},
            {"OUTBOUND_REQUEST: handed to the relay, which answers later", S::Ready,
             I{relay_in::FrameDecoded{OutboundRequest{9, "x", 443}}}, S::Ready,
             V{"StartOutbound(9,x:443)"}},
            {"OUTBOUND_REQUEST while the agent drains: still handed on", S::Ready,
             I{relay_in::FrameDecoded{AgentState{true}},
               relay_in::FrameDecoded{OutboundRequest{10, "192.0.2.1", 22}}},
             S::Ready, V{"StartOutbound(10,192.0.2.1:22)"}},
            {"two requests in a row: one action each, no state kept", S::Ready,
             I{relay_in::FrameDecoded{OutboundRequest{1, "a", 1}},
               relay_in::FrameDecoded{OutboundRequest{1, "a", 1}}},
             S::Ready, V{"StartOutbound(1,a:1)"}},
            {"GOODBYE rx: closed with the agent's reason, no GOODBYE back", S::Ready,
             I{relay_in::FrameDecoded{Goodbye{GoodbyeReason::Reload, "reloading"}}}, S::Closed,
             V{"Close(agent-disconnected,reload,ready)"}},
            {"HELLO again", S::Ready, I{relay_in::FrameDecoded{hello()}}, S::Closing,
             V{"Goodbye(protocol)", "Close(agent-disconnected,protocol,ready)"}},
            {"an R-direction message", S::Ready, I{relay_in::FrameDecoded{OpenChannels{{Token{}}}}},
             S::Closing, V{"Goodbye(protocol)", "Close(agent-disconnected,protocol,ready)"}},
            {"decode error", S::Ready, I{relay_in::DecodeError{GoodbyeReason::ProtocolError, "x"}},
             S::Closing, V{"Goodbye(protocol)", "Close(agent-disconnected,protocol,ready)"}},
            {"peer closed", S::Ready, I{relay_in::PeerEof{}}, S::Closed,
             V{"Close(agent-disconnected,closed,ready)"}},
            {"a failed send closes the connection", S::Ready, I{relay_in::WriteFailed{"EPIPE"}},
             S::Closed, V{"Close(agent-disconnected,closed,ready)"}},
            {"tick, recent traffic both ways: nothing", S::Ready,
             I{relay_in::Tick{kT0, kT0 - 1s, kT0 - 1s}}, S::Ready, V{}},
            {"tick, nothing sent for an interval: HEARTBEAT", S::Ready,
             I{relay_in::Tick{kT0, kT0 - 1s, kT0 - 5s}}, S::Ready, V{"Send(HEARTBEAT)"}},
            {"tick, silent for exactly 3 intervals: still alive", S::Ready,
             I{relay_in::Tick{kT0, kT0 - 15s, kT0}}, S::Ready, V{}},
            {"silent peer gets GOODBYE(timeout) before close", S::Ready,
             I{relay_in::Tick{kT0, kT0 - 15001ms, kT0}}, S::Closing,
             V{"Goodbye(timeout)", "Close(agent-disconnected,timeout,ready)"}},
            {"key revoked", S::Ready, I{relay_in::KeyRevoked{}}, S::Closing,
             V{"Goodbye(bad-key)", "Close(agent-disconnected,key-removed,ready)"}},
            {"address denied by reload", S::Ready, I{relay_in::AddressDenied{}}, S::Closing,
             V{"Goodbye(not-allowed)", "Close(agent-disconnected,not-allowed,ready)"}},
            {"replaced", S::Ready, I{relay_in::Replaced{}}, S::Closing,
             V{"Goodbye(replaced)", "Close(agent-disconnected,replaced,ready)"}},
            {"shutdown", S::Ready, I{relay_in::Shutdown{}}, S::Closing,
             V{"Goodbye(shutdown)", "Close(agent-disconnected,shutdown,ready)"}},
            {"upgrade handed over", S::Ready, I{relay_in::Shutdown{true}}, S::Closing,
             V{"Goodbye(reload)", "Close(agent-disconnected,shutdown,ready)"}},
            {"authentication changed by reload", S::Ready, I{relay_in::Reauthenticate{}},
             S::Closing, V{"Goodbye(reload)", "Close(agent-disconnected,reload,ready)"}},
            {"handshake timer after Ready ignored", S::Ready, I{relay_in::HandshakeTimeout{}},
             S::Ready, V{}},
        });
    }

    TEST_CASE("relay_fsm: Closing and Closed rows") {
        check_rows({
            {"flushed", S::Closing, I{relay_in::Flushed{}}, S::Closed, V{}},
            {"linger expired", S::Closing, I{relay_in::LingerExpired{}}, S::Closed, V{}},
            {"reads nothing more", S::Closing, I{relay_in::FrameDecoded{Config{1, {}}}}, S::Closing,
             V{}},
            {"no second close", S::Closing, I{relay_in::PeerEof{}}, S::Closing, V{}},
            {"closed is final", S::Closed, I{relay_in::Shutdown{}}, S::Closed, V{}},
            {"closed ignores frames", S::Closed, I{relay_in::FrameDecoded{hello()}}, S::Closed,
             V{}},
        });
    }

    TEST_CASE("relay_fsm: the heartbeat uses the negotiated interval once Ready") {
        RelayFsm f = make();
        (void)f.on(relay_in::TlsDone{"k1"});
        (void)f.on(relay_in::FrameDecoded{hello("a", 0, 1000)});
        (void)f.on(relay_in::ClaimGranted{});
        REQUIRE(f.heartbeat_ms() == 1000);
        CHECK(describe(f.on(relay_in::Tick{kT0, kT0, kT0 - 1s})) == V{"Send(HEARTBEAT)"});
        CHECK(describe(f.on(relay_in::Tick{kT0, kT0 - 3001ms, kT0})) ==
              V{"Goodbye(timeout)", "Close(agent-disconnected,timeout,ready)"});
    }

    TEST_CASE("relay_fsm: agent names follow agent.toml's rule") {
        CHECK(valid_agent_name("mft-1"));
        CHECK(valid_agent_name("a.b_c-D9"));
        CHECK(valid_agent_name(std::string(64, 'x')));
        CHECK_FALSE(valid_agent_name(""));
        CHECK_FALSE(valid_agent_name(std::string(65, 'x')));
        CHECK_FALSE(valid_agent_name("a b"));
        CHECK_FALSE(valid_agent_name(std::string("a\0b", 3)));
        CHECK_FALSE(valid_agent_name("\xc3\xa9"));
    }
}

namespace {

// Two connections and the directory, wired as the relay wires them: a Claim
// action goes to the directory, its verdict back to the machine, and a
// Replaces verdict becomes Replaced on the holder.
struct Relay {
    AgentDirectory dir;
    std::vector<RelayFsm> conns;

    V connect(size_t i, const std::string& identity, const std::string& name) {
        RelayFsm& f = conns[i];
        (void)f.on(relay_in::TlsDone{identity});
        return run(i, f.on(relay_in::FrameDecoded{hello(name)}));
    }

    V run(size_t i, std::vector<RelayAction> actions) {
        V seen;
        for (auto& a : actions) {
            seen.push_back(describe(a));
            if (const auto* c = std::get_if<relay_out::Claim>(&a)) {
                const auto verdict = dir.claim(c->name, c->identity, i);
                if (verdict.verdict == AgentDirectory::Verdict::Conflict) {
                    auto more = run(i, conns[i].on(relay_in::NameConflict{}));
                    seen.insert(seen.end(), more.begin(), more.end());
                    continue;
                }
                if (verdict.verdict == AgentDirectory::Verdict::Replaces) {
                    auto old = run(verdict.holder, conns[verdict.holder].on(relay_in::Replaced{}));
                    for (auto& o : old) {
                        seen.push_back(fmt::format("#{} {}", verdict.holder, o));
                    }
                }
                auto more = run(i, conns[i].on(relay_in::ClaimGranted{}));
                seen.insert(seen.end(), more.begin(), more.end());
            }
            if (const auto* c = std::get_if<relay_out::Close>(&a); c != nullptr && c->was_ready) {
                dir.release(conns[i].name(), i);
            }
        }
        return seen;
    }
};

}  // namespace

TEST_SUITE("control.relay_fsm") {
    TEST_CASE("relay_fsm: replacement needs the same name AND the same identity") {
        Relay r;
        for (int i = 0; i < 3; ++i) {
            r.conns.push_back(make());
        }
        REQUIRE(r.connect(0, "k1", "same-name") ==
                V{"Claim(same-name,k1)", "Send(HELLO_ACK v1 hb=5000 id=7)",
                  "Connected(same-name,k1,pool=8,hb=5000)", "IssueTokens(8)"});

        SUBCASE("another key claiming the name is refused; the first keeps it") {
            CHECK(r.connect(1, "k2", "same-name") == V{"Claim(same-name,k2)",
                                                       "Goodbye(not-allowed)",
                                                       "Close(agent-rejected,name-conflict)"});
            CHECK(r.conns[0].state() == RelayState::Ready);
            CHECK(r.dir.holder("same-name") == std::optional<uint64_t>(0));
            // The refused one leaving does not free the name.
            (void)r.run(1, r.conns[1].on(relay_in::LingerExpired{}));
            CHECK(r.dir.holder("same-name") == std::optional<uint64_t>(0));
        }
        SUBCASE("the same key (a restarted agent) replaces its old connection") {
            CHECK(r.connect(1, "k1", "same-name") ==
                  V{"Claim(same-name,k1)", "#0 Goodbye(replaced)",
                    "#0 Close(agent-disconnected,replaced,ready)",
                    "Send(HELLO_ACK v1 hb=5000 id=7)", "Connected(same-name,k1,pool=8,hb=5000)",
                    "IssueTokens(8)"});
            CHECK(r.conns[0].state() == RelayState::Closing);
            CHECK(r.dir.holder("same-name") == std::optional<uint64_t>(1));
        }
        SUBCASE("the same key under another name is another agent") {
            CHECK(r.connect(1, "k1", "other-name").size() == 4);
            CHECK(r.conns[0].state() == RelayState::Ready);
            CHECK(r.dir.size() == 2);
        }
        SUBCASE("once the holder is gone the name is free for any identity") {
            (void)r.run(0, r.conns[0].on(relay_in::PeerEof{}));
            CHECK_FALSE(r.dir.holder("same-name"));
            CHECK(r.connect(1, "k2", "same-name").size() == 4);
        }
    }

    TEST_CASE("agent_directory: empty identities never take a name over") {
        AgentDirectory d;
        CHECK(d.claim("a", "", 1).verdict == AgentDirectory::Verdict::Granted);
        const auto c = d.claim("a", "", 2);
        CHECK(c.verdict == AgentDirectory::Verdict::Conflict);
        CHECK(c.holder == 1);
        CHECK(d.claim("a", "", 1).verdict == AgentDirectory::Verdict::Granted);
        d.release("a", 2);
        CHECK(d.holder("a") == std::optional<uint64_t>(1));
        d.release("a", 1);
        CHECK(d.size() == 0);
    }
}
