// SPDX-License-Identifier: Apache-2.0
// The SOCKS5 server handshake as tables: client bytes in, server bytes and a
// verdict out (RFC 1928, RFC 1929).
#include "outbound/socks5.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "outbound/reply.hpp"

using sp::outbound::Socks5Server;
using sp::outbound::Users;
using Bytes = std::vector<uint8_t>;
using St = Socks5Server::Status;

namespace {

Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) {
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

Bytes str(std::string_view s) {
    return {s.begin(), s.end()};
}

Users users() {
    auto u = Users::parse("alice:s3cret\nbob:pw:with:colons\n", "users");
    REQUIRE(u);
    return *u;
}

const Bytes kFail01 = {5, 1, 0, 1, 0, 0, 0, 0, 0, 0};

}  // namespace

TEST_CASE("socks5: no-auth CONNECT to each address type") {
    struct Row {
        const char* name;
        Bytes request;
        std::string host;
        uint16_t port;
    };
    const std::vector<Row> rows = {
        {"ipv4", {5, 1, 0, 1, 192, 0, 2, 7, 0x01, 0xbb}, "192.0.2.7", 443},
        {"ipv6",
         {5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22},
         "2001:db8::1",
         22},
        {"name", cat({{5, 1, 0, 3, 11}, str("example.org"), {0x00, 0x50}}), "example.org", 80},
    };
    for (const auto& r : rows) {
        CAPTURE(r.name);
        Socks5Server s(nullptr);
        auto g = s.feed(Bytes{5, 2, 0, 2});
        CHECK(g.status == St::NeedMore);
        CHECK(g.send == Bytes{5, 0});
        auto c = s.feed(r.request);
        CHECK(c.status == St::Connect);
        CHECK(c.send.empty());
        CHECK(s.target().host == r.host);
        CHECK(s.target().port == r.port);
        CHECK(s.early().empty());
    }
}

TEST_CASE("socks5: byte by byte gives the same result, early bytes are kept") {
    const Bytes all = cat({{5, 1, 0}, {5, 1, 0, 3, 1, 'h', 0, 7}, str("GET")});
    Socks5Server s(nullptr);
    Bytes sent;
    Socks5Server::Step last;
    for (const uint8_t b : all) {
        last = s.feed(Bytes{b});
        sent.insert(sent.end(), last.send.begin(), last.send.end());
        if (last.status != St::NeedMore) {
            break;
        }
    }
    CHECK(last.status == St::Connect);
    CHECK(sent == Bytes{5, 0});
    CHECK(s.target().host == "h");
    CHECK(s.target().port == 7);
    // Connect came with the last request byte; early bytes come in later calls
    // only when fed at once:
    Socks5Server t(nullptr);
    auto r = t.feed(all);
    CHECK(r.status == St::Connect);
    CHECK(r.send == Bytes{5, 0});
    CHECK(Bytes(t.early().begin(), t.early().end()) == str("GET"));
}

TEST_CASE("socks5: refusals and their replies") {
    struct Row {
        const char* name;
        Bytes in;
        Bytes send;  // everything answered, in order
    };
    const std::vector<Row> rows = {
        {"SOCKS4", {4, 1, 0, 80, 1, 2, 3, 4, 0}, {}},
        {"no methods", {5, 0}, {5, 0xff}},
        {"only password offered", {5, 1, 2}, {5, 0xff}},
        {"BIND",
         {5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80},
         cat({{5, 0}, {5, 7, 0, 1, 0, 0, 0, 0, 0, 0}})},
        {"UDP ASSOCIATE",
         {5, 1, 0, 5, 3, 0, 1, 1, 2, 3, 4, 0, 80},
         cat({{5, 0}, {5, 7, 0, 1, 0, 0, 0, 0, 0, 0}})},
        {"unknown ATYP",
         {5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80},
         cat({{5, 0}, {5, 8, 0, 1, 0, 0, 0, 0, 0, 0}})},
        {"bad request version", {5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, {5, 0}},
        {"port 0", {5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 0}, cat({{5, 0}, kFail01})},
        {"empty name", {5, 1, 0, 5, 1, 0, 3, 0, 0, 80}, cat({{5, 0}, kFail01})},
        {"name with a space", cat({{5, 1, 0, 5, 1, 0, 3, 3}, str("a b"), {0, 80}}),
         cat({{5, 0}, kFail01})},
        {"name with NUL", cat({{5, 1, 0, 5, 1, 0, 3, 2, 'a', 0, 0, 80}}), cat({{5, 0}, kFail01})},
    };
    for (const auto& r : rows) {
        CAPTURE(r.name);
        Socks5Server s(nullptr);
        const auto step = s.feed(r.in);
        CHECK(step.status == St::Failed);
        CHECK(step.send == r.send);
        CHECK(!s.why().empty());
        CHECK(!s.auth_refused());
        CHECK(s.feed(Bytes{5}).status == St::Failed);  // final
    }
}

TEST_CASE("socks5: username/password (RFC 1929) when users are configured") {
    const Users u = users();
    SUBCASE("right credentials") {
        Socks5Server s(&u);
        CHECK(s.feed(Bytes{5, 2, 0, 2}).send == Bytes{5, 2});
        auto a = s.feed(cat({{1, 5}, str("alice"), {6}, str("s3cret")}));
        CHECK(a.status == St::NeedMore);
        CHECK(a.send == Bytes{1, 0});
        CHECK(s.feed(Bytes{5, 1, 0, 1, 10, 0, 0, 1, 0, 22}).status == St::Connect);
        CHECK(s.user() == "alice");
    }
    SUBCASE("a password with colons") {
        Socks5Server s(&u);
        (void)s.feed(Bytes{5, 1, 2});
        CHECK(s.feed(cat({{1, 3}, str("bob"), {14}, str("pw:with:colons")})).send == Bytes{1, 0});
    }
    SUBCASE("wrong password") {
        Socks5Server s(&u);
        (void)s.feed(Bytes{5, 1, 2});
        auto a = s.feed(cat({{1, 5}, str("alice"), {6}, str("s3creT")}));
        CHECK(a.status == St::Failed);
        CHECK(a.send == Bytes{1, 1});
        CHECK(s.auth_refused());
    }
    SUBCASE("unknown user") {
        Socks5Server s(&u);
        (void)s.feed(Bytes{5, 1, 2});
        CHECK(s.feed(cat({{1, 3}, str("eve"), {1}, str("x")})).send == Bytes{1, 1});
    }
    SUBCASE("no-auth only offered") {
        Socks5Server s(&u);
        CHECK(s.feed(Bytes{5, 1, 0}).send == Bytes{5, 0xff});
    }
    SUBCASE("greeting and credentials in one segment") {
        Socks5Server s(&u);
        auto a = s.feed(cat({{5, 1, 2, 1, 5}, str("alice"), {6}, str("s3cret")}));
        CHECK(a.status == St::NeedMore);
        CHECK(a.send == Bytes{5, 2, 1, 0});
    }
}

TEST_CASE("socks5: bounded") {
    Socks5Server s(nullptr);
    (void)s.feed(Bytes{5, 1, 0});
    Bytes big(Socks5Server::kMaxBuffered + 1, 0);
    CHECK(s.feed(big).status == St::Failed);
}

TEST_CASE("socks5: reply encodes the bound address") {
    CHECK(Socks5Server::reply(0, std::nullopt) == Bytes{5, 0, 0, 1, 0, 0, 0, 0, 0, 0});
    auto v4 = sp::SocketAddress::parse("192.0.2.1:8080");
    REQUIRE(v4);
    CHECK(Socks5Server::reply(0, *v4) == Bytes{5, 0, 0, 1, 192, 0, 2, 1, 0x1f, 0x90});
    auto v6 = sp::SocketAddress::parse("[2001:db8::2]:1");
    REQUIRE(v6);
    const auto r = Socks5Server::reply(5, *v6);
    CHECK(r.size() == 22);
    CHECK(r[1] == 5);
    CHECK(r[3] == 4);
    CHECK(r[4] == 0x20);
    CHECK(r[21] == 1);
}
