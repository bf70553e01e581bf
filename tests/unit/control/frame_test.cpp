// SPDX-License-Identifier: Apache-2.0
#include "control/frame.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "config/agent_config.hpp"
#include "control/token.hpp"

using namespace sp::control;

namespace {

Token token_of(uint8_t seed) {
    Token t{};
    for (size_t i = 0; i < t.size(); ++i) {
        t[i] = static_cast<uint8_t>(seed + i * 7);
    }
    return t;
}

std::vector<Message> sample_messages() {
    return {
        Hello{1, 1, "mft-1", "0.1.0", 8, 5000},
        HelloAck{1, "0.1.0", 2500, 0x0102030405060708ull},
        Config{7,
               {ServiceSpec{"sftp", {"0.0.0.0:22"}, {}, {"203.0.113.0/24"}, 0, 0},
                ServiceSpec{"ftps",
                            {"0.0.0.0:21", "0.0.0.0:30000-30009", "[::]:990"},
                            {"198.51.100.0/24", "2001:db8::/32"},
                            {},
                            500,
                            3600}}},
        ConfigResult{7,
                     {ListenResult{"sftp", "0.0.0.0:22", ListenStatus::Ok, 0, ""},
                      ListenResult{"ftps", "0.0.0.0:21", ListenStatus::BindFailed, 98,
                                   "Address already in use"},
                      ListenResult{"ftps", "[::]:990", ListenStatus::NotAllowed, 0, "no"}}},
        OpenChannels{{token_of(1), token_of(2), token_of(3)}},
        Heartbeat{0xfffffffffffffffeull},
        Goodbye{GoodbyeReason::Version, "no common version (relay 1-1, agent 2-3)"},
        BackendFailed{42, -111, "10.0.5.20:22"},
        OutboundRequest{9, "updates.example.com", 443},
        OutboundResult{9, OutboundStatus::Ok, 0, token_of(9)},
        AgentState{true},
    };
}

std::vector<uint8_t> frame_of(const Message& m) {
    std::vector<uint8_t> out;
    REQUIRE(encode(m, out));
    return out;
}

std::vector<uint8_t> raw_frame(uint16_t type, const std::vector<uint8_t>& payload,
                               uint8_t version = 1, uint8_t flags = 0) {
    const auto len = static_cast<uint32_t>(payload.size());
    std::vector<uint8_t> f(kFrameHeaderSize + payload.size());
    f[0] = static_cast<uint8_t>(len >> 24);
    f[1] = static_cast<uint8_t>(len >> 16);
    f[2] = static_cast<uint8_t>(len >> 8);
    f[3] = static_cast<uint8_t>(len);
    f[4] = static_cast<uint8_t>(type >> 8);
    f[5] = static_cast<uint8_t>(type);
    f[6] = version;
    f[7] = flags;
    std::copy(payload.begin(), payload.end(), f.begin() + kFrameHeaderSize);
    return f;
}

DecodeResult decode_vec(const std::vector<uint8_t>& v) {
    return decode(v);
}

}  // namespace

TEST_SUITE("control.frame") {
    TEST_CASE("frame: every message type round-trips through encode and decode") {
        const auto msgs = sample_messages();
        REQUIRE(msgs.size() == std::variant_size_v<Message>);
        for (const auto& m : msgs) {
            CAPTURE(to_string(type_of(m)));
            const auto f = frame_of(m);
            CHECK(f.size() >= kFrameHeaderSize);
            CHECK(f[4] * 256 + f[5] == static_cast<int>(type_of(m)));
            CHECK(f[6] == kProtocolVersion);
            CHECK(f[7] == 0);
            const auto r = decode_vec(f);
            REQUIRE(r.status == DecodeStatus::Ok);
            CHECK(r.consumed == f.size());
            CHECK(r.message == m);
        }
    }

    TEST_CASE("frame: heartbeat has the documented byte layout") {
        const auto f = frame_of(Heartbeat{0x0102030405060708ull});
        const std::vector<uint8_t> want = {0, 0, 0, 8, 0, 6, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8};
        CHECK(f == want);
    }

    TEST_CASE("frame: agent state has the documented byte layout") {
        const std::vector<uint8_t> on = {0, 0, 0, 1, 0, 11, 1, 0, 1};
        const std::vector<uint8_t> off = {0, 0, 0, 1, 0, 11, 1, 0, 0};
        CHECK(frame_of(AgentState{true}) == on);
        CHECK(frame_of(AgentState{false}) == off);
        CHECK(decode_vec(off).message == Message{AgentState{false}});
        CHECK(to_string(MessageType::AgentState) == "AGENT_STATE");
    }

    TEST_CASE("frame: agent state with unknown flag bits or a wrong length is an error") {
        for (const uint8_t flags : {0x02, 0x03, 0x80, 0xff}) {
            CAPTURE(flags);
            CHECK(decode_vec(raw_frame(11, {flags})).status == DecodeStatus::Error);
        }
        CHECK(decode_vec(raw_frame(11, {})).status == DecodeStatus::Error);
        CHECK(decode_vec(raw_frame(11, {1, 0})).status == DecodeStatus::Error);
    }

    TEST_CASE("frame: every truncation gives need-more, then ok at full length") {
        for (const auto& m : sample_messages()) {
            CAPTURE(to_string(type_of(m)));
            const auto f = frame_of(m);
            for (size_t k = 0; k < f.size(); ++k) {
                const auto r = decode(std::span<const uint8_t>(f.data(), k));
                REQUIRE(r.status == DecodeStatus::NeedMore);
                CHECK(r.needed > k);
                CHECK(r.needed <= f.size());
            }
            CHECK(decode_vec(f).status == DecodeStatus::Ok);
        }
    }

    TEST_CASE("frame: back-to-back frames decode one at a time") {
        std::vector<uint8_t> stream;
        const auto msgs = sample_messages();
        for (const auto& m : msgs) {
            REQUIRE(encode(m, stream));
        }
        std::span<const uint8_t> in(stream);
        for (const auto& m : msgs) {
            const auto r = decode(in);
            REQUIRE(r.status == DecodeStatus::Ok);
            CHECK(r.message == m);
            in = in.subspan(r.consumed);
        }
        CHECK(in.empty());
    }

    TEST_CASE("frame: oversize length is an error before the payload arrives") {
        const auto f = raw_frame(6, {});
        auto hdr = f;
        const uint32_t len = kMaxFrame + 1;
        hdr[0] = static_cast<uint8_t>(len >> 24);
        hdr[1] = static_cast<uint8_t>(len >> 16);
        hdr[2] = static_cast<uint8_t>(len >> 8);
        hdr[3] = static_cast<uint8_t>(len);
        const auto r = decode_vec(hdr);
        CHECK(r.status == DecodeStatus::Error);
        CHECK(r.reason == GoodbyeReason::ProtocolError);
        hdr[0] = hdr[1] = hdr[2] = hdr[3] = 0xff;
        CHECK(decode_vec(hdr).status == DecodeStatus::Error);
        // exactly kMaxFrame is allowed and waits for the payload
        hdr[0] = 0;
        hdr[1] = 0x10;
        hdr[2] = 0;
        hdr[3] = 0;
        const auto ok = decode_vec(hdr);
        CHECK(ok.status == DecodeStatus::NeedMore);
        CHECK(ok.needed == kFrameHeaderSize + kMaxFrame);
    }

    TEST_CASE("frame: bad version, flags or type are rejected from the header alone") {
        const std::vector<uint8_t> hb(8, 0);
        auto v = decode_vec(raw_frame(6, hb, 2));
        CHECK(v.status == DecodeStatus::Error);
        CHECK(v.reason == GoodbyeReason::Version);
        CHECK(decode_vec(raw_frame(6, hb, 0)).reason == GoodbyeReason::Version);
        auto fl = decode_vec(raw_frame(6, hb, 1, 0x80));
        CHECK(fl.status == DecodeStatus::Error);
        CHECK(fl.reason == GoodbyeReason::ProtocolError);
        CHECK(decode_vec(raw_frame(0, hb)).status == DecodeStatus::Error);
        CHECK(decode_vec(raw_frame(12, hb)).status == DecodeStatus::Error);
        CHECK(decode_vec(raw_frame(0xffff, hb)).status == DecodeStatus::Error);
        // header-only: errors even without the payload
        auto header_only = raw_frame(0x1234, {});
        header_only[3] = 100;
        CHECK(decode_vec(header_only).status == DecodeStatus::Error);
    }

    TEST_CASE("frame: trailing bytes inside a payload are an error") {
        for (const auto& m : sample_messages()) {
            CAPTURE(to_string(type_of(m)));
            auto f = frame_of(m);
            std::vector<uint8_t> payload(f.begin() + kFrameHeaderSize, f.end());
            payload.push_back(0);
            const auto r = decode_vec(raw_frame(static_cast<uint16_t>(type_of(m)), payload));
            CHECK(r.status == DecodeStatus::Error);
            CHECK(r.reason == GoodbyeReason::ProtocolError);
        }
    }

    TEST_CASE("frame: a payload shorter than its fields is an error") {
        for (const auto& m : sample_messages()) {
            CAPTURE(to_string(type_of(m)));
            auto f = frame_of(m);
            std::vector<uint8_t> payload(f.begin() + kFrameHeaderSize, f.end());
            REQUIRE(!payload.empty());
            payload.pop_back();
            const auto r = decode_vec(raw_frame(static_cast<uint16_t>(type_of(m)), payload));
            CHECK(r.status == DecodeStatus::Error);
        }
    }

    TEST_CASE("frame: oversize strings are refused by encoder and decoder") {
        Hello h;
        h.agent_name = std::string(kMaxName + 1, 'a');
        std::vector<uint8_t> out = {0xaa};
        CHECK_FALSE(encode(h, out));
        CHECK(out.size() == 1);  // unchanged on failure

        // hand-built HELLO with a 256-byte name
        std::vector<uint8_t> p = {1, 1, 0x01, 0x00};
        p.insert(p.end(), 256, 'a');
        p.insert(p.end(), {0, 0, 0, 0, 0, 0, 0, 0});
        CHECK(decode_vec(raw_frame(1, p)).status == DecodeStatus::Error);
        // same with 255 bytes decodes
        std::vector<uint8_t> q = {1, 1, 0x00, 0xff};
        q.insert(q.end(), 255, 'a');
        q.insert(q.end(), {0, 0, 0, 0, 0, 0, 0, 0});
        CHECK(decode_vec(raw_frame(1, q)).status == DecodeStatus::Ok);

        Goodbye g{GoodbyeReason::Shutdown, std::string(kMaxString + 1, 'x')};
        CHECK_FALSE(encode(g, out));
        g.message.pop_back();
        CHECK(encode(g, out));
    }

    TEST_CASE("frame: oversize lists are refused by encoder and decoder") {
        OpenChannels oc;
        oc.tokens.assign(kMaxTokens + 1, Token{});
        std::vector<uint8_t> out;
        CHECK_FALSE(encode(oc, out));
        CHECK(out.empty());
        // count 1025 with no items: the count alone is the error
        const std::vector<uint8_t> p = {0x04, 0x01};
        const auto r = decode_vec(raw_frame(5, p));
        CHECK(r.status == DecodeStatus::Error);
        CHECK(r.error.find("limit") != std::string::npos);

        Config c;
        c.services.assign(kMaxServices + 1, ServiceSpec{});
        CHECK_FALSE(encode(c, out));
        Config many;
        for (int i = 0; i < 17; ++i) {
            ServiceSpec s;
            // Not "s" + std::to_string(i): gcc 12 -O2 reports a false
            // -Wrestrict in the inlined string insert (GCC bug 105329).
            s.name = std::to_string(i);
            s.name.insert(s.name.begin(), 's');
            s.listen.assign(kMaxListenPerService, "0.0.0.0:1");
            many.services.push_back(s);
        }
        CHECK_FALSE(encode(many, out));  // 17 * 256 > kMaxListeners
        many.services.pop_back();
        CHECK(encode(many, out));
        CHECK(decode_vec(out).status == DecodeStatus::Ok);
    }

    TEST_CASE("frame: a CONFIG's payload is as long as the agent's config predicts") {
        // sp_config refuses files whose CONFIG would break a wire bound; it
        // can only do that if its size formula is the codec's.
        auto cfg = sp::config::parse_agent_config(
            "[agent]\nname = \"a\"\n[[relay]]\naddress = \"r:1\"\nkey = \"k\"\n"
            "[[service]]\nname = \"sftp\"\nlisten = [\"0.0.0.0:22\", \"[2001:db8::1]:2200-2299\"]\n"
            "backend = [\"b:22\"]\nallow_clients = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n"
            "[[service]]\nname = \"https\"\nlisten = [\"192.0.2.7:443\"]\nbackend = [\"b:443\"]\n"
            "deny_clients = [\"198.51.100.0/24\"]\nmax_sessions = 5\n",
            "agent.toml");
        REQUIRE(cfg);
        Config c;  // as the agent builds it: every address as its to_string()
        for (const auto& s : cfg->services) {
            ServiceSpec w;
            w.name = s.name;
            for (const auto& l : s.listen) {
                w.listen.push_back(l.to_string());
            }
            for (const auto& a : s.allow_clients) {
                w.allow_clients.push_back(a.to_string());
            }
            for (const auto& d : s.deny_clients) {
                w.deny_clients.push_back(d.to_string());
            }
            w.max_sessions = s.max_sessions;
            c.services.push_back(std::move(w));
        }
        std::vector<uint8_t> out;
        REQUIRE(encode(c, out));
        CHECK(out.size() - kFrameHeaderSize == sp::config::wire_config_size(*cfg));
    }

    TEST_CASE("frame: encoder refuses a payload over kMaxFrame") {
        ConfigResult cr;
        cr.results.assign(kMaxListenResults, ListenResult{"s", "0.0.0.0:1", ListenStatus::Invalid,
                                                          0, std::string(kMaxString, 'm')});
        std::vector<uint8_t> out;
        const auto r = encode(cr, out);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == EMSGSIZE);
        CHECK(out.empty());
    }

    TEST_CASE("frame: out-of-range enum values are errors") {
        // GOODBYE reason 0 and kMaxGoodbyeReason + 1
        CHECK(decode_vec(raw_frame(7, {0, 0, 0, 0})).status == DecodeStatus::Error);
        CHECK(decode_vec(raw_frame(7, {0, 10, 0, 0})).status == DecodeStatus::Error);
        CHECK(decode_vec(raw_frame(7, {0, 9, 0, 0})).status == DecodeStatus::Ok);
        // CONFIG_RESULT with status 5
        std::vector<uint8_t> p = {0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0};
        CHECK(decode_vec(raw_frame(4, p)).status == DecodeStatus::Error);
        p[10] = 4;
        CHECK(decode_vec(raw_frame(4, p)).status == DecodeStatus::Ok);
        // OUTBOUND_RESULT with status 7
        std::vector<uint8_t> o = {0, 0, 0, 1, 7, 0, 0, 0, 0};
        o.insert(o.end(), 32, 0);
        CHECK(decode_vec(raw_frame(10, o)).status == DecodeStatus::Error);
        o[4] = 6;
        CHECK(decode_vec(raw_frame(10, o)).status == DecodeStatus::Ok);
        // and the encoder will not produce them
        std::vector<uint8_t> out;
        CHECK_FALSE(encode(Goodbye{static_cast<GoodbyeReason>(0), ""}, out));
        CHECK_FALSE(encode(OutboundResult{1, static_cast<OutboundStatus>(200), 0, Token{}}, out));
    }

    TEST_CASE("frame: semantic checks reject empty token lists and inverted version ranges") {
        std::vector<uint8_t> out;
        CHECK_FALSE(encode(OpenChannels{}, out));
        CHECK(decode_vec(raw_frame(5, {0, 0})).status == DecodeStatus::Error);
        CHECK_FALSE(encode(Hello{2, 1, "a", "v", 0, 5000}, out));
        CHECK_FALSE(encode(Hello{0, 1, "a", "v", 0, 5000}, out));
        const std::vector<uint8_t> p = {2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        CHECK(decode_vec(raw_frame(1, p)).status == DecodeStatus::Error);
    }

    TEST_CASE("frame: version negotiation picks the highest common version") {
        CHECK(negotiate_version(Hello{1, 1, "a", "v", 0, 0}) == std::optional<uint8_t>(1));
        CHECK(negotiate_version(Hello{1, 9, "a", "v", 0, 0}) == std::optional<uint8_t>(1));
        CHECK_FALSE(negotiate_version(Hello{2, 3, "a", "v", 0, 0}));
        CHECK(negotiate_heartbeat_ms(0) == kDefaultHeartbeatMs);
        CHECK(negotiate_heartbeat_ms(1) == kMinHeartbeatMs);
        CHECK(negotiate_heartbeat_ms(2500) == 2500);
        CHECK(negotiate_heartbeat_ms(0xffffffffu) == kMaxHeartbeatMs);
    }

    TEST_CASE("frame: names of types and reasons match the documented spelling") {
        CHECK(to_string(MessageType::OpenChannels) == "OPEN_CHANNELS");
        CHECK(to_string(GoodbyeReason::BadKey) == "bad-key");
        CHECK(to_string(GoodbyeReason::ProtocolError) == "protocol");
        CHECK(to_string(ListenStatus::BindFailed) == "bind-failed");
        CHECK(to_string(OutboundStatus::ConnectFailed) == "connect-failed");
    }
}

TEST_SUITE("control.channel") {
    TEST_CASE("channel: first bytes classify TLS, data channel and garbage") {
        using V = std::vector<uint8_t>;
        auto cls = [](const V& v) { return classify_first_bytes(v); };
        CHECK(cls({}) == FirstBytes::NeedMore);
        CHECK(cls({0x16}) == FirstBytes::NeedMore);
        CHECK(cls({0x16, 0x03}) == FirstBytes::NeedMore);
        CHECK(cls({0x16, 0x03, 0x01}) == FirstBytes::Tls);
        CHECK(cls({0x16, 0x03, 0x03, 0x00, 0xff}) == FirstBytes::Tls);
        CHECK(cls({0x16, 0x02}) == FirstBytes::Garbage);
        CHECK(cls({0x16, 0x03, 0x00}) == FirstBytes::Garbage);
        CHECK(cls({0x16, 0x03, 0x05}) == FirstBytes::Garbage);
        CHECK(cls({'S'}) == FirstBytes::NeedMore);
        CHECK(cls({'S', 'P', 'D'}) == FirstBytes::NeedMore);
        CHECK(cls({'S', 'P', 'D', 'C'}) == FirstBytes::DataChannel);
        CHECK(cls({'S', 'P', 'D', 'C', 1, 0}) == FirstBytes::DataChannel);
        CHECK(cls({'S', 'P', 'B', 'H'}) == FirstBytes::Garbage);
        CHECK(cls({'G', 'E', 'T', ' '}) == FirstBytes::Garbage);
        CHECK(cls({0x15, 0x03, 0x01}) == FirstBytes::Garbage);  // TLS alert record
        CHECK(cls({'s', 'p', 'd', 'c'}) == FirstBytes::Garbage);
    }

    TEST_CASE("channel: hello round-trips and has the documented layout") {
        const Token t = token_of(40);
        const auto h = encode_channel_hello(t);
        CHECK(h[0] == 'S');
        CHECK(h[3] == 'C');
        CHECK(h[4] == 1);
        CHECK((h[5] | h[6] | h[7]) == 0);
        CHECK(classify_first_bytes(h) == FirstBytes::DataChannel);
        for (size_t k = 0; k < h.size(); ++k) {
            const auto r = decode_channel_hello(std::span<const uint8_t>(h.data(), k));
            CHECK(r.status == DecodeStatus::NeedMore);
            CHECK(r.needed == kChannelHelloSize);
        }
        const auto r = decode_channel_hello(h);
        REQUIRE(r.status == DecodeStatus::Ok);
        CHECK(r.token == t);
    }

    TEST_CASE("channel: hello with bad magic, version or reserved bytes is an error") {
        const auto good = encode_channel_hello(token_of(1));
        auto bad = good;
        bad[0] = 'X';
        CHECK(decode_channel_hello(std::span<const uint8_t>(bad.data(), 1)).status ==
              DecodeStatus::Error);
        bad = good;
        bad[4] = 2;
        CHECK(decode_channel_hello(bad).status == DecodeStatus::Error);
        bad = good;
        bad[6] = 1;
        CHECK(decode_channel_hello(bad).status == DecodeStatus::Error);
    }

    TEST_CASE("channel: binding header round-trips and leaves client bytes alone") {
        const Binding b{0xdeadbeefcafef00dull, "sftp", "[2001:db8::9]:51234", "0.0.0.0:22"};
        auto enc = encode_binding(b);
        REQUIRE(enc);
        auto bytes = *enc;
        CHECK(bytes[0] == 'S');
        CHECK(bytes[3] == 'H');
        CHECK(bytes[4] * 256 + bytes[5] == static_cast<int>(bytes.size() - kBindingFixedSize));
        const size_t header = bytes.size();
        for (size_t k = 0; k < header; ++k) {
            const auto r = decode_binding(std::span<const uint8_t>(bytes.data(), k));
            REQUIRE(r.status == DecodeStatus::NeedMore);
            CHECK(r.needed > k);
            CHECK(r.needed <= header);
        }
        bytes.insert(bytes.end(), {'S', 'S', 'H', '-', '2'});
        const auto r = decode_binding(bytes);
        REQUIRE(r.status == DecodeStatus::Ok);
        CHECK(r.binding == b);
        CHECK(r.consumed == header);
    }

    TEST_CASE("channel: malformed binding headers are errors") {
        const Binding b{1, "svc", "192.0.2.1:1", "0.0.0.0:2"};
        const auto good = *encode_binding(b);
        auto bad = good;
        bad[2] = 'X';
        CHECK(decode_binding(bad).status == DecodeStatus::Error);
        // length over the limit, judged from the 6 fixed bytes alone
        const std::vector<uint8_t> big = {'S', 'P', 'B', 'H', 0x04, 0x01};
        CHECK(decode_binding(big).status == DecodeStatus::Error);
        // trailing byte inside the declared payload
        bad = good;
        bad.push_back(0);
        bad[5] = static_cast<uint8_t>(bad[5] + 1);
        CHECK(decode_binding(bad).status == DecodeStatus::Error);
        // declared payload one byte short of its fields
        bad = good;
        bad.pop_back();
        bad[5] = static_cast<uint8_t>(bad[5] - 1);
        CHECK(decode_binding(bad).status == DecodeStatus::Error);
        // encoder refuses payloads over 1024 bytes
        Binding huge = b;
        huge.service.assign(1000, 's');
        CHECK_FALSE(encode_binding(huge));
        huge.service.assign(900, 's');
        CHECK(encode_binding(huge));
    }

    TEST_CASE("token: random tokens differ and compare in constant time") {
        auto a = random_token();
        auto b = random_token();
        REQUIRE(a);
        REQUIRE(b);
        CHECK_FALSE(token_equal(*a, *b));
        CHECK(token_equal(*a, *a));
        Token c = *a;
        c[31] ^= 1;
        CHECK_FALSE(token_equal(*a, c));
    }

    TEST_CASE("frame: a CONFIG_RESULT for the largest CONFIG is fitted into one frame") {
        // 4096 listen strings, each failing with a long message: far more
        // than one frame as it stands.
        ConfigResult r;
        r.generation = 7;
        for (int i = 0; i < 4096; ++i) {
            r.results.push_back(
                {std::string(64, 's'),
                 "10.0.0." + std::to_string(i % 250) + ":" + std::to_string(1000 + i),
                 i % 2 == 0 ? ListenStatus::Ok : ListenStatus::Conflict, 0,
                 std::string(4000, 'm')});
        }
        std::vector<uint8_t> out;
        REQUIRE_FALSE(encode(r, out));
        const size_t left_out = fit_to_frame(r);
        CHECK(left_out == 2048);  // every Ok result, no failure
        CHECK(std::all_of(r.results.begin(), r.results.end(), [](const ListenResult& x) {
            return x.status == ListenStatus::Conflict;
        }));
        REQUIRE(encode(r, out));
        CHECK(out.size() <= kFrameHeaderSize + kMaxFrame);
        // Messages were cut to one common length, and not to nothing.
        CHECK(r.results.front().message.size() == r.results.back().message.size());
        CHECK(r.results.front().message.size() > 100);
    }

    TEST_CASE("frame: fitting leaves a CONFIG_RESULT that fits alone untouched") {
        ConfigResult r;
        r.generation = 1;
        r.results.push_back({"svc", "0.0.0.0:22", ListenStatus::Ok, 0, "é" + std::string(10, 'x')});
        const ConfigResult before = r;
        CHECK(fit_to_frame(r) == 0);
        CHECK(r == before);
    }

    TEST_CASE("frame: fitting never cuts a UTF-8 sequence") {
        ConfigResult r;
        for (int i = 0; i < 4096; ++i) {
            std::string msg;
            for (int k = 0; k < 1500; ++k) {
                msg += "\xc3\xa9";  // é, two bytes
            }
            r.results.push_back(
                {std::string(200, 's'), std::string(200, 'l'), ListenStatus::BindFailed, 98, msg});
        }
        fit_to_frame(r);
        std::vector<uint8_t> out;
        REQUIRE(encode(r, out));
        for (const auto& x : r.results) {
            REQUIRE(x.message.size() % 2 == 0);
        }
    }
}
