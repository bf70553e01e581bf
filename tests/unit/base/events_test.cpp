// SPDX-License-Identifier: Apache-2.0
#include "base/events.hpp"

#include <cerrno>
#include <set>
#include <string>
#include <string_view>

#include <doctest/doctest.h>

using namespace sp::log;

TEST_SUITE("base.events") {
    TEST_CASE("events: one table row per Ev, in enum order, names unique and well formed") {
        std::set<std::string_view> names;
        for (size_t i = 0; i < kEvents.size(); ++i) {
            CHECK(static_cast<size_t>(kEvents[i].id) == i);
            const auto n = kEvents[i].name;
            CHECK(names.insert(n).second);
            CHECK_FALSE(n.empty());
            for (const char c : n) {
                CHECK(((c >= 'a' && c <= 'z') || c == '-'));
            }
        }
        CHECK(to_string(Ev::SessionClose) == "session-close");
        CHECK(spec(Ev::ReloadFailed).level == Level::Error);
    }

    TEST_CASE("events: priorities an admin filters on with journalctl -p") {
        for (const Ev e : {Ev::BindFailed, Ev::ConfigRejected, Ev::ReloadFailed,
                           Ev::ListenersSuspended, Ev::BackendFailed, Ev::ResourceLimit}) {
            CHECK_MESSAGE(spec(e).level <= Level::Warn, spec(e).name);
        }
        for (const Ev e : {Ev::ClientRejected, Ev::AgentRejected}) {
            CHECK_MESSAGE(spec(e).level >= Level::Notice, spec(e).name);
        }
        CHECK(spec(Ev::AgentDisconnected).level == Level::Notice);
    }

    TEST_CASE("events: check_fields accepts a complete event on each side") {
        CHECK(check_fields(Ev::SessionOpen, Side::Relay,
                           {{f::kSessionId, "1"},
                            {f::kService, "s"},
                            {f::kClientAddr, "203.0.113.9"},
                            {f::kClientPort, "4242"},
                            {f::kListenAddr, "127.0.0.1:22"},
                            {f::kAgent, "a"}})
                  .empty());
        CHECK(check_fields(Ev::SessionOpen, Side::Agent,
                           {{f::kSessionId, "1"},
                            {f::kService, "s"},
                            {f::kClientAddr, "203.0.113.9"},
                            {f::kClientPort, "4242"},
                            {f::kListenAddr, "127.0.0.1:22"},
                            {f::kBackendAddr, "10.0.0.1:22"},
                            {f::kRelayAddr, "relay:44500"}})
                  .empty());
        CHECK(check_fields(Ev::Stopping, Side::Relay, {}).empty());
    }

    TEST_CASE("events: check_fields names a missing required field") {
        const auto why = check_fields(Ev::ListenerOpen, Side::Relay,
                                      {{f::kService, "s"}, {f::kListenAddr, "127.0.0.1:22"}});
        CHECK(why.find("listener-open") != std::string::npos);
        CHECK(why.find("AGENT missing") != std::string::npos);
    }

    TEST_CASE("events: check_fields counts an empty value as absent") {
        CHECK_FALSE(check_fields(Ev::ReloadFailed, Side::Agent, {{f::kReason, ""}}).empty());
        CHECK(check_fields(Ev::ReloadFailed, Side::Agent, {{f::kReason, "x"}, {f::kSessionId, ""}})
                  .empty());
    }

    TEST_CASE("events: check_fields refuses a field the row does not list, and typos") {
        CHECK(check_fields(Ev::ReloadFailed, Side::Relay, {{f::kReason, "x"}, {f::kAgent, "a"}})
                  .find("AGENT not allowed") != std::string::npos);
        CHECK(check_fields(Ev::ControlListen, Side::Relay, {{"LISTEN_ADR", "127.0.0.1:1"}})
                  .find("LISTEN_ADR not allowed") != std::string::npos);
    }

    TEST_CASE("events: check_fields holds each daemon to its own side's fields") {
        // The agent's session fields on the relay are a bug, and the reverse.
        CHECK_FALSE(check_fields(Ev::ConfigApplied, Side::Relay, {{f::kRelayAddr, "r"}}).empty());
        CHECK_FALSE(check_fields(Ev::ConfigApplied, Side::Agent, {{f::kAgent, "a"}}).empty());
        CHECK(check_fields(Ev::ConfigApplied, Side::Relay, {{f::kAgent, "a"}}).empty());
        // Side unknown (a unit test, the daemon shell alone): either side's.
        CHECK(check_fields(Ev::ConfigApplied, Side::Both, {{f::kRelayAddr, "r"}}).empty());
    }

    TEST_CASE("events: errno_reason gives names a query can match") {
        CHECK(errno_reason(ECONNREFUSED) == "ECONNREFUSED");
        CHECK(errno_reason(-EADDRINUSE) == "EADDRINUSE");
        CHECK(errno_reason(ETIMEDOUT) == "timeout");
    }
}
