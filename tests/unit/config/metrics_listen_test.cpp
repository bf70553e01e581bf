// SPDX-License-Identifier: Apache-2.0
#include <doctest/doctest.h>

#include "config/agent_config.hpp"
#include "config/relay_config.hpp"

using namespace sp::config;

TEST_SUITE("config.metrics_listen") {
    TEST_CASE("metrics_listen: off unless set, on both daemons") {
        auto r = parse_relay_config("[auth]\nkeys = \"/k\"\n", "/etc/sallyport/relay.toml");
        REQUIRE(r);
        CHECK_FALSE(r->relay.metrics_listen);
        auto a = parse_agent_config(
            "[agent]\nname = \"a\"\n[[relay]]\naddress = \"192.0.2.1:44500\"\nkey = \"/k\"\n",
            "/etc/sallyport/agent.toml");
        REQUIRE(a);
        CHECK_FALSE(a->agent.metrics_listen);
    }

    TEST_CASE("metrics_listen: an empty string is off, an address is read") {
        auto off = parse_relay_config("[relay]\nmetrics_listen = \"\"\n[auth]\nkeys = \"/k\"\n",
                                      "/etc/sallyport/relay.toml");
        REQUIRE(off);
        CHECK_FALSE(off->relay.metrics_listen);
        auto on = parse_relay_config(
            "[relay]\nmetrics_listen = \"10.9.0.5:9750\"\n[auth]\nkeys = \"/k\"\n",
            "/etc/sallyport/relay.toml");
        REQUIRE(on);
        REQUIRE(on->relay.metrics_listen);
        CHECK(on->relay.metrics_listen->to_string() == "10.9.0.5:9750");
        auto v6 = parse_agent_config(
            "[agent]\nname = \"a\"\nmetrics_listen = \"[::1]:9751\"\n[[relay]]\naddress = "
            "\"192.0.2.1:44500\"\nkey = \"/k\"\n",
            "/etc/sallyport/agent.toml");
        REQUIRE(v6);
        REQUIRE(v6->agent.metrics_listen);
        CHECK(v6->agent.metrics_listen->to_string() == "[::1]:9751");
    }

    TEST_CASE("metrics_listen: a wrong type is refused at its position") {
        auto r =
            parse_relay_config("[relay]\nmetrics_listen = 9750\n[auth]\nkeys = \"/k\"\n", "t.toml");
        REQUIRE_FALSE(r);
        CHECK(r.error().key == "relay.metrics_listen");
        CHECK(r.error().line == 2);
    }
}
