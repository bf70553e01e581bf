// SPDX-License-Identifier: Apache-2.0
#include "admin/protocol.hpp"

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "admin/args.hpp"

using namespace sp::admin;

namespace {

struct Bad {
    std::string line;
    ErrorCode code;
    std::string says;  // substring of the message
};

}  // namespace

TEST_SUITE("admin.protocol") {
    TEST_CASE("request: good lines decode to their command and args") {
        struct Good {
            std::string line;
            std::string cmd;
            std::string args;  // args re-encoded
        };
        const std::vector<Good> table = {
            {R"({"v":1,"cmd":"status"})", "status", "{}"},
            {R"({"v":1,"cmd":"status"})"
             "\n",
             "status", "{}"},
            {R"({"v":1,"cmd":"status"})"
             "\r\n",
             "status", "{}"},
            {R"( { "cmd" : "status" , "v" : 1 } )", "status", "{}"},
            {R"({"v":1,"cmd":"sessions","args":{"service":"sftp","client":"10.0.0.0/8"}})",
             "sessions", R"({"service":"sftp","client":"10.0.0.0/8"})"},
            {R"({"v":1,"cmd":"close","args":{"id":"5f0c9a2e7b1d4c38"}})", "close",
             R"({"id":"5f0c9a2e7b1d4c38"})"},
            {R"({"v":1,"cmd":"a","args":{}})", "a", "{}"},
            {R"({"v":1,"cmd":"x-2"})", "x-2", "{}"},
            {R"({"v":1,"cmd":"abcdefghijklmnopqrstuvwxyz012345"})",
             "abcdefghijklmnopqrstuvwxyz012345", "{}"},
            {R"({"v":1,"cmd":"e","args":{"a":[[[[[[1]]]]]]}})", "e", R"({"a":[[[[[[1]]]]]]})"},
            {R"({"v":1,"cmd":"e","args":{"s":"caf\u00e9 \"q\""}})", "e",
             "{\"s\":\"caf\xc3\xa9 \\\"q\\\"\"}"},
            {R"({"v":1,"cmd":"e","args":{"a":{"k":1},"b":{"k":2}}})", "e",
             R"({"a":{"k":1},"b":{"k":2}})"},
        };
        for (const auto& t : table) {
            CAPTURE(t.line);
            auto r = decode_request(t.line);
            REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
            CHECK(r->cmd == t.cmd);
            CHECK(r->args.dump() == t.args);
        }
    }

    TEST_CASE("request: bad lines are refused with the code the answer carries") {
        const std::vector<Bad> table = {
            {"", ErrorCode::BadRequest, "not JSON"},
            {"\n", ErrorCode::BadRequest, "not JSON"},
            {"status", ErrorCode::BadRequest, "not JSON"},
            {R"({"v":1,"cmd":"status"}x)", ErrorCode::BadRequest, "not JSON"},
            {R"({"v":1,"cmd":"status",})", ErrorCode::BadRequest, "not JSON"},
            {R"({"v":1,"cmd":"status"} // c)", ErrorCode::BadRequest, "not JSON"},
            {"{\"v\":1,\"cmd\":\"st\x01\"}", ErrorCode::BadRequest, "not JSON"},
            {"{\"v\":1,\"cmd\":\"\xc3\x28\"}", ErrorCode::BadRequest, "not JSON"},
            {"{\"v\":1,\n\"cmd\":\"status\"}", ErrorCode::BadRequest, "one line"},
            {R"({"v":1,"cmd":"status"}
{"v":1,"cmd":"status"})",
             ErrorCode::BadRequest, "one line"},
            {"[1]", ErrorCode::BadRequest, "JSON object"},
            {"1", ErrorCode::BadRequest, "JSON object"},
            {R"("status")", ErrorCode::BadRequest, "JSON object"},
            {R"({"cmd":"status"})", ErrorCode::BadRequest, "missing \"v\""},
            {R"({"v":"1","cmd":"status"})", ErrorCode::BadRequest, "integer"},
            {R"({"v":1.0,"cmd":"status"})", ErrorCode::BadRequest, "integer"},
            {R"({"v":null,"cmd":"status"})", ErrorCode::BadRequest, "integer"},
            {R"({"v":2,"cmd":"status"})", ErrorCode::UnsupportedVersion, "version 2"},
            {R"({"v":0,"cmd":"status"})", ErrorCode::UnsupportedVersion, "speaks 1"},
            {R"({"v":-1,"cmd":"status"})", ErrorCode::UnsupportedVersion, "version -1"},
            {R"({"v":18446744073709551615,"cmd":"status"})", ErrorCode::UnsupportedVersion,
             "not supported"},
            {R"({"v":2,"cmd":"status","extra":true})", ErrorCode::UnsupportedVersion, ""},
            {R"({"v":1})", ErrorCode::BadRequest, "missing \"cmd\""},
            {R"({"v":1,"cmd":""})", ErrorCode::BadRequest, "command name"},
            {R"({"v":1,"cmd":"Status"})", ErrorCode::BadRequest, "command name"},
            {R"({"v":1,"cmd":"1st"})", ErrorCode::BadRequest, "command name"},
            {R"({"v":1,"cmd":"-x"})", ErrorCode::BadRequest, "command name"},
            {R"({"v":1,"cmd":"a b"})", ErrorCode::BadRequest, "command name"},
            {R"({"v":1,"cmd":"a_b"})", ErrorCode::BadRequest, "command name"},
            {R"({"v":1,"cmd":"abcdefghijklmnopqrstuvwxyz0123456"})", ErrorCode::BadRequest,
             "command name"},
            {R"({"v":1,"cmd":7})", ErrorCode::BadRequest, "command name"},
            {R"({"v":1,"cmd":"status","args":[]})", ErrorCode::BadRequest, "object"},
            {R"({"v":1,"cmd":"status","args":"x"})", ErrorCode::BadRequest, "object"},
            {R"({"v":1,"cmd":"status","args":null})", ErrorCode::BadRequest, "object"},
            {R"({"v":1,"cmd":"status","arg":{}})", ErrorCode::BadRequest, "unknown member"},
            {R"({"v":1,"cmd":"status","v":1})", ErrorCode::BadRequest, "appears twice"},
            {R"({"v":1,"cmd":"status","args":{"a":1,"a":2}})", ErrorCode::BadRequest,
             "\"a\" appears twice"},
            {R"({"v":1,"cmd":"e","args":{"x":[{"k":1,"k":1}]}})", ErrorCode::BadRequest,
             "appears twice"},
            {R"({"v":1,"cmd":"e","args":{"a":[[[[[[[1]]]]]]]}})", ErrorCode::BadRequest,
             "deeper than 8"},
            {std::string(kMaxRequestBytes + 1, ' '), ErrorCode::TooLarge, "65536"},
        };
        for (const auto& t : table) {
            CAPTURE(t.line.substr(0, 80));
            auto r = decode_request(t.line);
            REQUIRE_FALSE(r);
            CHECK(r.error().code == t.code);
            CHECK_MESSAGE(r.error().message.find(t.says) != std::string::npos, r.error().message);
        }
    }

    TEST_CASE("request: a line of exactly the bound is decoded, one byte more is too large") {
        std::string line = R"({"v":1,"cmd":"status","args":{"pad":")";
        const std::string tail = "\"}}\n";
        line += std::string(kMaxRequestBytes - line.size() - tail.size(), 'x');
        line += tail;
        REQUIRE(line.size() == kMaxRequestBytes);
        CHECK(decode_request(line));
        line.insert(line.begin() + 40, 'x');
        auto r = decode_request(line);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == ErrorCode::TooLarge);
    }

    TEST_CASE("request: encode gives one line that decodes to the same request") {
        Request rq;
        rq.cmd = "sessions";
        rq.args["service"] = "sftp";
        rq.args["client"] = "10.0.0.0/8";
        const std::string line = encode_request(rq);
        CHECK(line == R"({"v":1,"cmd":"sessions","args":{"service":"sftp","client":"10.0.0.0/8"}})"
                      "\n");
        auto back = decode_request(line);
        REQUIRE(back);
        CHECK(back->cmd == rq.cmd);
        CHECK(back->args == rq.args);
        Request bare;
        bare.cmd = "status";
        CHECK(encode_request(bare) == "{\"v\":1,\"cmd\":\"status\"}\n");
    }

    TEST_CASE("answer: ok and error lines have the documented layout and decode back") {
        Json data = Json::object();
        data["program"] = "sallyport-relay";
        data["pid"] = 42;
        const std::string ok = encode_ok(data);
        CHECK(ok == R"({"v":1,"ok":true,"data":{"program":"sallyport-relay","pid":42}})"
                    "\n");
        auto r = decode_response(ok);
        REQUIRE(r);
        CHECK(r->ok);
        CHECK(r->data == data);

        const std::string err = encode_error(ErrorCode::UnknownCommand, "no \"x\"\nhere");
        CHECK(err == R"({"v":1,"ok":false,"code":"unknown-command","error":"no \"x\"\nhere"})"
                     "\n");
        CHECK(err.find('\n') == err.size() - 1);
        auto e = decode_response(err);
        REQUIRE(e);
        CHECK_FALSE(e->ok);
        CHECK(e->failure.code == ErrorCode::UnknownCommand);
        CHECK(e->failure.message == "no \"x\"\nhere");
    }

    TEST_CASE("answer: invalid UTF-8 in a string is replaced, never thrown") {
        Json data = Json::object();
        data["raw"] = std::string(
            "a\xff"
            "b");
        const std::string line = encode_ok(data);
        auto r = decode_response(line);
        REQUIRE(r);
        CHECK(r->data["raw"] ==
              "a\xef\xbf\xbd"
              "b");
    }

    TEST_CASE("answer: every code round-trips; an unknown one reads as failed") {
        for (auto c : {ErrorCode::BadRequest, ErrorCode::TooLarge, ErrorCode::UnsupportedVersion,
                       ErrorCode::UnknownCommand, ErrorCode::BadArgs, ErrorCode::NotFound,
                       ErrorCode::ConfigRejected, ErrorCode::Busy, ErrorCode::Timeout,
                       ErrorCode::AnswerTooLarge, ErrorCode::Failed}) {
            CHECK(error_code_from(to_string(c)) == c);
        }
        auto r = decode_response(R"({"v":1,"ok":false,"code":"from-the-future","error":"x"})");
        REQUIRE(r);
        CHECK(r->failure.code == ErrorCode::Failed);
        CHECK(r->code_text == "from-the-future");
    }

    TEST_CASE("answer: malformed answers are errors; unknown members are ignored") {
        CHECK(decode_response(R"({"v":1,"ok":true,"data":{},"later":1})"));
        for (const char* bad :
             {"", "x", "[]", R"({"ok":true,"data":{}})", R"({"v":2,"ok":true,"data":{}})",
              R"({"v":1,"data":{}})", R"({"v":1,"ok":"yes","data":{}})", R"({"v":1,"ok":true})",
              R"({"v":1,"ok":false,"error":"x"})", R"({"v":1,"ok":false,"code":"busy"})"}) {
            CAPTURE(bad);
            CHECK_FALSE(decode_response(bad));
        }
    }

    TEST_CASE("args: typed getters refuse wrong types and unknown members by name") {
        auto rq =
            decode_request(R"({"v":1,"cmd":"x","args":{"s":"a","n":5,"b":true,"neg":-1,"f":1.5}})");
        REQUIRE(rq);
        const Args a(rq->args);
        CHECK(a.string("s").value() == std::optional<std::string>("a"));
        CHECK(a.string("missing").value() == std::nullopt);
        CHECK(a.uint("n").value() == std::optional<uint64_t>(5));
        CHECK(a.boolean("b").value() == std::optional<bool>(true));
        CHECK(a.required_string("s").value() == "a");
        for (const auto& r :
             {a.string("n").error(), a.uint("s").error(), a.uint("neg").error(),
              a.uint("f").error(), a.boolean("n").error(), a.required_string("missing").error()}) {
            CHECK(r.code == ErrorCode::BadArgs);
        }
        CHECK(a.only({"s", "n", "b", "neg", "f"}));
        auto extra = a.only({"s", "n"});
        REQUIRE_FALSE(extra);
        CHECK(extra.error().code == ErrorCode::BadArgs);
        CHECK(extra.error().message.find("\"b\"") != std::string::npos);
    }

    TEST_CASE("format_time: RFC 3339 in UTC") {
        CHECK(format_time(std::chrono::system_clock::time_point(std::chrono::seconds(0))) ==
              "1970-01-01T00:00:00Z");
        CHECK(format_time(std::chrono::system_clock::time_point(
                  std::chrono::seconds(1795253400))) == "2026-11-21T09:30:00Z");
    }
}
