// SPDX-License-Identifier: Apache-2.0
#include "daemon/commands.hpp"

#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "daemon/fan_in.hpp"

using namespace sp;
using namespace sp::daemon;
using admin::ErrorCode;
using admin::Json;

namespace {

/// A Reply whose answer lands in `out`, decoded.
Reply capture(std::optional<admin::Response>& out) {
    return Reply([&out](std::string line) {
        auto r = admin::decode_response(line);
        REQUIRE(r);
        out = std::move(*r);
    });
}

admin::Request request(const std::string& cmd, Json args = Json::object()) {
    admin::Request r;
    r.cmd = cmd;
    r.args = std::move(args);
    return r;
}

}  // namespace

TEST_SUITE("daemon.commands") {
    TEST_CASE("registry: a synchronous handler's data or failure is the answer") {
        CommandRegistry reg;
        reg.register_command("echo", [](const admin::Args& a) -> admin::Outcome<Json> {
            if (auto r = a.only({"x"}); !r) {
                return tl::unexpected(r.error());
            }
            return a.json();
        });
        std::optional<admin::Response> got;
        reg.dispatch(request("echo", Json{{"x", 1}}), capture(got));
        REQUIRE(got);
        CHECK(got->ok);
        CHECK(got->data == Json{{"x", 1}});
        got.reset();
        reg.dispatch(request("echo", Json{{"y", 1}}), capture(got));
        REQUIRE(got);
        CHECK_FALSE(got->ok);
        CHECK(got->failure.code == ErrorCode::BadArgs);
    }

    TEST_CASE("registry: an unknown command is answered unknown-command") {
        CommandRegistry reg;
        std::optional<admin::Response> got;
        reg.dispatch(request("agents"), capture(got));
        REQUIRE(got);
        CHECK(got->failure.code == ErrorCode::UnknownCommand);
        CHECK(got->failure.message.find("agents") != std::string::npos);
    }

    TEST_CASE("registry: an asynchronous handler answers later; a dropped Reply answers failed") {
        CommandRegistry reg;
        std::vector<Reply> held;
        reg.register_async("later",
                           [&held](const admin::Args&, Reply r) { held.push_back(std::move(r)); });
        reg.register_async("drop", [](const admin::Args&, Reply) {});
        std::optional<admin::Response> a;
        std::optional<admin::Response> b;
        reg.dispatch(request("later"), capture(a));
        CHECK_FALSE(a);
        REQUIRE(held.size() == 1);
        held[0].ok(Json{{"done", true}});
        REQUIRE(a);
        CHECK(a->data == Json{{"done", true}});
        CHECK(held[0].answered());
        reg.dispatch(request("drop"), capture(b));
        REQUIRE(b);
        CHECK(b->failure.code == ErrorCode::Failed);
    }

    TEST_CASE("registry: commands replace by name and list sorted with summaries") {
        CommandRegistry reg;
        reg.register_command(
            "b", [](const admin::Args&) { return Json(1); }, "bee");
        reg.register_command(
            "a", [](const admin::Args&) { return Json(2); }, "ay");
        reg.register_command(
            "b", [](const admin::Args&) { return Json(3); }, "bee two");
        const auto list = reg.list();
        REQUIRE(list.size() == 2);
        CHECK(list[0].first == "a");
        CHECK(list[1].second == "bee two");
        std::optional<admin::Response> got;
        reg.dispatch(request("b"), capture(got));
        CHECK(got->data == Json(3));
    }

    TEST_CASE("fan_in: folds every part in answer order, counts dropped completions") {
        std::vector<UniqueFunction<void(int)>> pending;
        std::vector<Source<int>> sources;
        sources.emplace_back([](UniqueFunction<void(int)> done) { done(1); });
        sources.emplace_back(
            [&pending](UniqueFunction<void(int)> done) { pending.push_back(std::move(done)); });
        sources.emplace_back([](UniqueFunction<void(int)> /*dropped*/) {});
        sources.emplace_back(
            [&pending](UniqueFunction<void(int)> done) { pending.push_back(std::move(done)); });
        std::optional<std::vector<int>> result;
        std::vector<int> order;
        fan_in(
            sources, 0,
            [&order](int acc, int part) {
                order.push_back(part);
                return acc + part;
            },
            [&result, &order](int sum) {
                result = std::vector<int>{sum, int(order.size())};
            });
        CHECK_FALSE(result);
        REQUIRE(pending.size() == 2);
        pending[1](100);
        CHECK_FALSE(result);
        pending[0](10);
        REQUIRE(result);
        CHECK((*result)[0] == 111);
        CHECK(order == std::vector<int>{1, 100, 10});
        pending[0](5);  // a second answer is ignored
        CHECK((*result)[0] == 111);
    }

    TEST_CASE("fan_in: no source answers init at once") {
        std::optional<int> got;
        fan_in(
            std::vector<Source<int>>{}, 7, [](int a, int b) { return a + b; },
            [&got](int v) { got = v; });
        CHECK(got == 7);
    }
}
