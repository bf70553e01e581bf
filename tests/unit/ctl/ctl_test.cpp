// SPDX-License-Identifier: Apache-2.0
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "ctl/cli.hpp"
#include "ctl/format.hpp"

using namespace sp::ctl;
using sp::admin::Json;

namespace {

sp::Result<Options> parse(std::vector<const char*> args) {
    return parse_args(args);
}

}  // namespace

TEST_SUITE("ctl.cli") {
    TEST_CASE("cli: global options anywhere, command options after the command") {
        auto o = parse({"-s", "/run/x.sock", "--json", "sessions", "--service", "sftp",
                        "--client=10.0.0.0/8", "-t", "3"});
        REQUIRE(o);
        CHECK(o->socket == "/run/x.sock");
        CHECK(o->json);
        CHECK(o->timeout == std::chrono::seconds(3));
        CHECK(o->request.cmd == "sessions");
        CHECK(o->request.args.dump() == R"({"service":"sftp","client":"10.0.0.0/8"})");

        auto p = parse({"status", "--json", "--socket=/a.sock", "-t5"});
        REQUIRE(p);
        CHECK(p->json);
        CHECK(p->socket == "/a.sock");
        CHECK(p->timeout == std::chrono::seconds(5));
        CHECK(p->request.args.empty());

        auto c = parse({"close", "5f0c9a2e7b1d4c38"});
        REQUIRE(c);
        CHECK(c->request.cmd == "close");
        CHECK(c->request.args.dump() == R"({"id":"5f0c9a2e7b1d4c38"})");

        auto s = parse({"-s/x", "status"});
        REQUIRE(s);
        CHECK(s->socket == "/x");
    }

    TEST_CASE("cli: every known command parses without arguments except close") {
        for (const auto name : command_names()) {
            CAPTURE(name);
            const std::string n(name);
            auto o = parse({n.c_str()});
            CHECK(o.has_value() == (name != "close"));
        }
    }

    TEST_CASE("cli: help and version need no command") {
        CHECK(parse({"--help"})->help);
        CHECK(parse({"-h"})->help);
        CHECK(parse({"--version"})->version);
        CHECK(help_text().find("--socket") != std::string::npos);
    }

    TEST_CASE("cli: usage errors name what is wrong") {
        struct Bad {
            std::vector<const char*> args;
            std::string says;
        };
        const std::vector<Bad> table = {
            {{}, "no command"},
            {{"frobnicate"}, "unknown command \"frobnicate\""},
            {{"status", "extra"}, "takes no operand"},
            {{"close"}, "exactly one SESSION_ID"},
            {{"close", "1", "2"}, "exactly one SESSION_ID"},
            {{"status", "--service", "x"}, "unknown option --service for status"},
            {{"--service", "x", "sessions"}, "unknown option --service"},
            {{"sessions", "--client", "10.0.0.1/8"}, "host bits"},
            {{"sessions", "--client", "nonsense"}, "invalid --client"},
            {{"sessions", "--service"}, "needs a value"},
            {{"sessions", "--service="}, "needs a service name"},
            {{"-s"}, "needs a value"},
            {{"-s", "", "status"}, "needs a socket path"},
            {{"-t", "0", "status"}, "invalid -t"},
            {{"--timeout=abc", "status"}, "invalid --timeout"},
            {{"--json=yes", "status"}, "unknown option --json"},
            {{"-x", "status"}, "unknown option -x"},
        };
        for (const auto& t : table) {
            auto o = parse(t.args);
            REQUIRE_FALSE(o);
            CAPTURE(o.error().message);
            CHECK(o.error().kind == sp::ErrorKind::Usage);
            CHECK(o.error().message.find(t.says) != std::string::npos);
        }
    }
}

TEST_SUITE("ctl.format") {
    TEST_CASE("format: units from field names") {
        CHECK(format_bytes(0) == "0 B");
        CHECK(format_bytes(1023) == "1023 B");
        CHECK(format_bytes(1536) == "1.50 KiB");
        CHECK(format_bytes(1572864) == "1.50 MiB");
        CHECK(format_bytes(200ULL << 20) == "200 MiB");
        CHECK(format_bytes(12ULL << 30) == "12.0 GiB");
        CHECK(format_seconds(0) == "0s");
        CHECK(format_seconds(45.9) == "45s");
        CHECK(format_seconds(192) == "3m12s");
        CHECK(format_seconds(7500) == "2h05m");
        CHECK(format_seconds(273600) == "3d04h");
        CHECK(format_millis(0.42) == "0.4 ms");
        CHECK(format_millis(12.4) == "12 ms");
        CHECK(format_millis(1250) == "1.25 s");
        CHECK(format_value("up_bytes", Json(1048576)) == "1.00 MiB");
        CHECK(format_value("age_s", Json(61)) == "1m01s");
        CHECK(format_value("rtt_ms", Json(3.25)) == "3.2 ms");
        CHECK(format_value("sessions", Json(7)) == "7");
        CHECK(format_value("draining", Json(true)) == "yes");
        CHECK(format_value("agent", Json()) == "-");
        CHECK(format_value("agents", Json::array({"a", "b"})) == "a,b");
        CHECK(format_value("backends", Json::parse(R"([
                  {"address":"10.0.5.20:22","healthy":true,"sessions":1},
                  {"address":"10.0.5.21:22","healthy":false,"sessions":0}])")) ==
              "10.0.5.20:22 (healthy yes, sessions 1),10.0.5.21:22 (healthy no, sessions 0)");
        CHECK(label("uptime_s", false) == "uptime");
        CHECK(label("started_at", false) == "started at");
        CHECK(label("up_bytes", true) == "UP");
        CHECK(label("key_id", true) == "KEY_ID");
    }

    TEST_CASE("format: a document of scalars is aligned key: value lines") {
        const Json doc = Json::parse(
            R"({"program":"sallyport-relay","pid":812,"uptime_s":3725,"draining":false,
                "counts":{"agents":2,"sessions":10}})");
        CHECK(format_document(doc) ==
              "program:  sallyport-relay\n"
              "pid:      812\n"
              "uptime:   1h02m\n"
              "draining: no\n"
              "counts:\n"
              "  agents:   2\n"
              "  sessions: 10\n");
    }

    TEST_CASE("format: a list document is a table with numbers right-aligned") {
        const Json doc = Json::parse(
            R"({"sessions":[
                {"id":"5f0c","client":"203.0.113.9:5123","service":"sftp","age_s":192,"up_bytes":1572864,"down_bytes":348160},
                {"id":"5f0d","client":"[2001:db8::1]:40000","service":"https","age_s":5,"up_bytes":12,"down_bytes":null}]})");
        CHECK(format_document(doc) ==
              "ID    CLIENT               SERVICE    AGE        UP     DOWN\n"
              "5f0c  203.0.113.9:5123     sftp     3m12s  1.50 MiB  340 KiB\n"
              "5f0d  [2001:db8::1]:40000  https       5s      12 B        -\n");
        CHECK(format_document(Json::parse(R"({"sessions":[]})")) == "no sessions\n");
        CHECK(format_document(Json::object()) == "OK\n");
    }
}
