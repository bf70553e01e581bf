// SPDX-License-Identifier: Apache-2.0
// HTTP CONNECT requests as tables: request head in, verdict and response out.
#include "outbound/http_connect.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

using sp::outbound::HttpConnectParser;
using sp::outbound::Target;
using sp::outbound::Users;
using St = HttpConnectParser::Status;

namespace {

std::span<const uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

TEST_CASE("http_connect: accepted requests") {
    struct Row {
        const char* head;
        std::string host;
        uint16_t port;
    };
    const std::vector<Row> rows = {
        {"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n", "example.org", 443},
        {"CONNECT 192.0.2.1:22 HTTP/1.0\r\n\r\n", "192.0.2.1", 22},
        {"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nUser-Agent: curl\r\n\r\n", "2001:db8::1", 8443},
        {"CONNECT a:1 HTTP/1.1\n\n", "a", 1},
        {"CONNECT a:65535 HTTP/1.1\r\nX: y\r\n\r\n", "a", 65535},
    };
    for (const auto& r : rows) {
        CAPTURE(r.head);
        HttpConnectParser p(nullptr);
        const auto s = p.feed(bytes(r.head));
        CHECK(s.status == St::Connect);
        CHECK(p.target().host == r.host);
        CHECK(p.target().port == r.port);
        CHECK(p.early().empty());
    }
}

TEST_CASE("http_connect: byte by byte, and early bytes after the head") {
    const std::string all = "CONNECT h.example:443 HTTP/1.1\r\nHost: h\r\n\r\n\x16\x03\x01";
    HttpConnectParser p(nullptr);
    HttpConnectParser::Step last;
    size_t i = 0;
    for (; i < all.size() - 3; ++i) {
        last = p.feed(bytes(std::string_view(all).substr(i, 1)));
        if (last.status != St::NeedMore) {
            break;
        }
    }
    CHECK(last.status == St::Connect);
    CHECK(i == all.size() - 4);
    HttpConnectParser q(nullptr);
    CHECK(q.feed(bytes(all)).status == St::Connect);
    CHECK(q.early().size() == 3);
    CHECK(q.early()[0] == 0x16);
}

TEST_CASE("http_connect: refusals") {
    struct Row {
        const char* head;
        std::string_view status;  // prefix of the response
    };
    const std::vector<Row> rows = {
        {"GET http://example.org/ HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "},
        {"connect a:1 HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "},
        {"CONNECT a:1 HTTP/2.0\r\n\r\n", "HTTP/1.1 505 "},
        {"CONNECT a:1 SPDY/1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT a HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT a:0 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT a:65536 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT a:+80 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT 2001:db8::1:80 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT [example.org]:80 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT [::1:80 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT a b:1 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT a:1  HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT a:1 HTTP/1.1\r\nno colon\r\n\r\n", "HTTP/1.1 400 "},
        {"CONNECT a:1 HTTP/1.1\r\n folded: x\r\n\r\n", "HTTP/1.1 400 "},
        {"\r\n\r\n", "HTTP/1.1 400 "},
    };
    for (const auto& r : rows) {
        const std::string head = r.head;
        CAPTURE(head);
        HttpConnectParser p(nullptr);
        const auto s = p.feed(bytes(r.head));
        CHECK(s.status == St::Failed);
        CHECK(s.response.substr(0, r.status.size()) == r.status);
        CHECK(!p.why().empty());
        CHECK(p.feed(bytes("x")).status == St::Failed);
    }
}

TEST_CASE("http_connect: the head is bounded") {
    HttpConnectParser p(nullptr);
    std::string head =
        "CONNECT a:1 HTTP/1.1\r\nX: " + std::string(HttpConnectParser::kMaxHead, 'y');
    auto s = p.feed(bytes(head));
    CHECK(s.status == St::Failed);
    CHECK(s.response.substr(0, 13) == "HTTP/1.1 400 ");
}

TEST_CASE("http_connect: Proxy-Authorization Basic when users are configured") {
    auto u = Users::parse("alice:s3cret\n", "f");
    REQUIRE(u);
    struct Row {
        const char* auth;  // header line or ""
        bool ok;
    };
    // YWxpY2U6czNjcmV0 = alice:s3cret, YWxpY2U6d3Jvbmc= = alice:wrong
    const std::vector<Row> rows = {
        {"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n", true},
        {"proxy-authorization:   basic YWxpY2U6czNjcmV0  \r\n", true},
        {"Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n", false},
        {"Proxy-Authorization: Bearer YWxpY2U6czNjcmV0\r\n", false},
        {"Proxy-Authorization: Basic !!!\r\n", false},
        {"Authorization: Basic YWxpY2U6czNjcmV0\r\n", false},
        {"", false},
    };
    for (const auto& r : rows) {
        CAPTURE(r.auth);
        HttpConnectParser p(&*u);
        const std::string head = std::string("CONNECT a:1 HTTP/1.1\r\n") + r.auth + "\r\n";
        const auto s = p.feed(bytes(head));
        if (r.ok) {
            CHECK(s.status == St::Connect);
            CHECK(p.user() == "alice");
        } else {
            CHECK(s.status == St::Failed);
            CHECK(s.response == HttpConnectParser::kResponse407);
            CHECK(s.response.find("Proxy-Authenticate: Basic") != std::string_view::npos);
            CHECK(p.auth_refused());
        }
    }
}

TEST_CASE("http_connect: base64 and authority helpers") {
    std::string out;
    CHECK(sp::outbound::base64_decode("YWxpY2U6czNjcmV0", out));
    CHECK(out == "alice:s3cret");
    CHECK(sp::outbound::base64_decode("YQ==", out));
    CHECK(out == "a");
    CHECK(!sp::outbound::base64_decode("Y", out));
    CHECK(!sp::outbound::base64_decode("Y-_a", out));
    Target t;
    CHECK(sp::outbound::parse_authority("[::1]:80", t));
    CHECK(t.host == "::1");
    CHECK(t.to_string() == "[::1]:80");
    CHECK(!sp::outbound::parse_authority(":80", t));
    CHECK(!sp::outbound::parse_authority("a:", t));
}
