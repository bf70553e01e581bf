// SPDX-License-Identifier: Apache-2.0
// A relay's verdict as the application hears it: one row per OutboundStatus
// and errno, with the SOCKS5 code, HTTP status and REASON word.
#include "outbound/reply.hpp"

#include <cerrno>
#include <string>
#include <vector>

#include <doctest/doctest.h>

using sp::control::OutboundStatus;
using sp::outbound::Failure;

TEST_CASE("reply: status and errno to SOCKS5 code, HTTP status and REASON") {
    struct Row {
        Failure f;
        int err;
        uint8_t socks;
        std::string_view http;  // status line prefix
        std::string_view reason;
    };
    const std::vector<Row> rows = {
        {Failure::NotAllowed, 0, 0x02, "HTTP/1.1 403 ", "not-allowed"},
        {Failure::Disabled, 0, 0x02, "HTTP/1.1 403 ", "disabled"},
        {Failure::ResolveFailed, 0, 0x04, "HTTP/1.1 502 ", "resolve-failed"},
        {Failure::ConnectFailed, ECONNREFUSED, 0x05, "HTTP/1.1 502 ", "connect-failed"},
        {Failure::ConnectFailed, -ECONNREFUSED, 0x05, "HTTP/1.1 502 ", "connect-failed"},
        {Failure::ConnectFailed, ENETUNREACH, 0x03, "HTTP/1.1 502 ", "connect-failed"},
        {Failure::ConnectFailed, EHOSTUNREACH, 0x04, "HTTP/1.1 502 ", "connect-failed"},
        {Failure::ConnectFailed, ETIMEDOUT, 0x04, "HTTP/1.1 502 ", "connect-failed"},
        {Failure::ConnectFailed, EACCES, 0x01, "HTTP/1.1 502 ", "connect-failed"},
        {Failure::Timeout, 0, 0x04, "HTTP/1.1 504 ", "timeout"},
        {Failure::Limit, 0, 0x01, "HTTP/1.1 503 ", "limit"},
        {Failure::NoRelay, 0, 0x01, "HTTP/1.1 503 ", "no-relay"},
        {Failure::BadRequest, 0, 0x01, "HTTP/1.1 400 ", "bad-request"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.reason);
        CAPTURE(r.err);
        CHECK(sp::outbound::socks_code(r.f, r.err) == r.socks);
        const auto http = sp::outbound::http_response(r.f);
        CHECK(http.substr(0, r.http.size()) == r.http);
        CHECK(http.substr(http.size() - 4) == "\r\n\r\n");
        CHECK(sp::outbound::to_string(r.f) == r.reason);
    }
}

TEST_CASE("reply: OutboundStatus to Failure") {
    CHECK(sp::outbound::failure_of(OutboundStatus::Denied) == Failure::NotAllowed);
    CHECK(sp::outbound::failure_of(OutboundStatus::ResolveFailed) == Failure::ResolveFailed);
    CHECK(sp::outbound::failure_of(OutboundStatus::ConnectFailed) == Failure::ConnectFailed);
    CHECK(sp::outbound::failure_of(OutboundStatus::Timeout) == Failure::Timeout);
    CHECK(sp::outbound::failure_of(OutboundStatus::Disabled) == Failure::Disabled);
    CHECK(sp::outbound::failure_of(OutboundStatus::Limit) == Failure::Limit);
    CHECK(sp::outbound::http_established() == "HTTP/1.1 200 Connection established\r\n\r\n");
}
