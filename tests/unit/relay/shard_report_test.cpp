// SPDX-License-Identifier: Apache-2.0
// The operator interface's pure parts: the sessions filter, the sum of the
// workers' reports, SESSION_ID parsing and the commands' argument checks.
#include "relay/shard_report.hpp"

#include <doctest/doctest.h>

#include "admin/args.hpp"
#include "relay/admin_commands.hpp"
#include "relay/session_events.hpp"

using namespace sp;
using namespace sp::relay;
using admin::ErrorCode;
using admin::Json;

namespace {

IpAddress ip(const char* s) {
    return *IpAddress::parse(s);
}

SessionFilter filter(std::optional<std::string> service, const char* cidr = nullptr) {
    SessionFilter f;
    f.service = std::move(service);
    if (cidr != nullptr) {
        f.client = *Cidr::parse(cidr);
    }
    return f;
}

}  // namespace

TEST_SUITE("relay.shard_report") {
    TEST_CASE("session filter: no criterion passes everything") {
        CHECK(SessionFilter{}.matches("sftp", ip("203.0.113.9")));
        CHECK(SessionFilter{}.matches("", ip("::1")));
    }

    TEST_CASE("session filter: service must match exactly") {
        const auto f = filter("sftp");
        CHECK(f.matches("sftp", ip("203.0.113.9")));
        CHECK_FALSE(f.matches("sftp2", ip("203.0.113.9")));
        CHECK_FALSE(f.matches("SFTP", ip("203.0.113.9")));
    }

    TEST_CASE("session filter: client must be inside the network, of its family") {
        const auto f = filter(std::nullopt, "203.0.113.0/24");
        CHECK(f.matches("x", ip("203.0.113.9")));
        CHECK(f.matches("x", ip("::ffff:203.0.113.200")));  // v4-mapped
        CHECK_FALSE(f.matches("x", ip("203.0.114.1")));
        CHECK_FALSE(f.matches("x", ip("2001:db8::1")));
        const auto v6 = filter(std::nullopt, "2001:db8::/32");
        CHECK(v6.matches("x", ip("2001:db8::7")));
        CHECK_FALSE(v6.matches("x", ip("203.0.113.9")));
        const auto host = filter(std::nullopt, "127.0.0.1");
        CHECK(host.matches("x", ip("127.0.0.1")));
        CHECK_FALSE(host.matches("x", ip("127.0.0.2")));
    }

    TEST_CASE("session filter: both criteria must hold") {
        const auto f = filter("https", "10.0.0.0/8");
        CHECK(f.matches("https", ip("10.1.2.3")));
        CHECK_FALSE(f.matches("sftp", ip("10.1.2.3")));
        CHECK_FALSE(f.matches("https", ip("192.0.2.1")));
    }

    TEST_CASE("report: merge sums counts and keeps entries only one side has") {
        ShardReport a;
        a.sessions = 2;
        a.up_bytes = 100;
        a.down_bytes = 7;
        a.pools[1] = {"mft-1", 2, 3};
        a.agent_sessions["mft-1"] = 2;
        a.listeners["127.0.0.1:2222"] = {"sftp", 5, 2, {{"denied", 1}}};
        ShardReport b;
        b.sessions = 1;
        b.up_bytes = 1;
        b.pools[1] = {"mft-1", 1, 4};
        b.pools[2] = {"mft-2", 0, 1};
        b.agent_sessions["mft-1"] = 1;
        b.agent_sessions["mft-2"] = 4;
        b.listeners["127.0.0.1:2222"] = {"sftp", 3, 1, {{"denied", 2}, {"draining", 1}}};
        b.listeners["127.0.0.1:443"] = {"https", 1, 0, {}};
        a.merge(b);
        CHECK(a.sessions == 3);
        CHECK(a.up_bytes == 101);
        CHECK(a.down_bytes == 7);
        REQUIRE(a.pools.size() == 2);
        CHECK(a.pools[1].agent == "mft-1");
        CHECK(a.pools[1].idle == 3);
        CHECK(a.pools[1].target == 7);
        CHECK(a.pools[2].agent == "mft-2");
        CHECK(a.agent_sessions["mft-1"] == 3);
        CHECK(a.agent_sessions["mft-2"] == 4);
        const auto& l = a.listeners["127.0.0.1:2222"];
        CHECK(l.service == "sftp");
        CHECK(l.accepts == 8);
        CHECK(l.sessions == 3);
        CHECK(l.refusals.at("denied") == 3);
        CHECK(l.refusals.at("draining") == 1);
        CHECK(a.listeners["127.0.0.1:443"].service == "https");
    }

    TEST_CASE("report: merging into an empty report copies the other") {
        ShardReport empty;
        ShardReport b;
        b.sessions = 4;
        b.listeners["[::1]:22"] = {"ssh", 9, 4, {{"limit", 5}}};
        empty.merge(b);
        CHECK(empty.sessions == 4);
        CHECK(empty.listeners["[::1]:22"].refusals.at("limit") == 5);
    }

    TEST_CASE("session id: 1 to 16 hex digits, either case, as session_hex writes them") {
        CHECK(parse_session_hex("5f0c9a2e7b1d4c38") == 0x5f0c9a2e7b1d4c38ULL);
        CHECK(parse_session_hex("5F0C9A2E7B1D4C38") == 0x5f0c9a2e7b1d4c38ULL);
        CHECK(parse_session_hex("ffffffffffffffff") == UINT64_MAX);
        CHECK(parse_session_hex("3e8") == 1000);
        CHECK(parse_session_hex(session_hex(1000)) == 1000);
        for (const char* bad :
             {"", "0x1", "+1", "-1", "1g", " 1", "1 ", "10000000000000000", "00000000000000001"}) {
            CAPTURE(bad);
            CHECK_FALSE(parse_session_hex(bad));
        }
    }

    TEST_CASE("commands: sessions takes service and client, refuses the rest") {
        const Json none = Json::object();
        auto all = AdminCommands::session_filter(admin::Args(none));
        REQUIRE(all);
        CHECK_FALSE(all->service);
        CHECK_FALSE(all->client);

        const Json both = {{"service", "sftp"}, {"client", "203.0.113.0/24"}};
        auto f = AdminCommands::session_filter(admin::Args(both));
        REQUIRE(f);
        CHECK(f->service == "sftp");
        REQUIRE(f->client);
        CHECK(f->client->to_string() == "203.0.113.0/24");

        for (const Json& bad : {Json{{"client", "nonsense"}}, Json{{"client", "10.0.0.1/8"}},
                                Json{{"service", 7}}, Json{{"agent", "x"}}}) {
            CAPTURE(bad.dump());
            const auto r = AdminCommands::session_filter(admin::Args(bad));
            REQUIRE_FALSE(r);
            CHECK(r.error().code == ErrorCode::BadArgs);
        }
    }

    TEST_CASE("commands: close needs an id that is a SESSION_ID") {
        const Json good = {{"id", "00000000000003e8"}};
        const auto id = AdminCommands::session_id(admin::Args(good));
        REQUIRE(id);
        CHECK(*id == 1000);
        for (const Json& bad : {Json::object(), Json{{"id", 1000}}, Json{{"id", "zz"}},
                                Json{{"id", "1"}, {"force", true}}}) {
            CAPTURE(bad.dump());
            const auto r = AdminCommands::session_id(admin::Args(bad));
            REQUIRE_FALSE(r);
            CHECK(r.error().code == ErrorCode::BadArgs);
        }
    }
}
