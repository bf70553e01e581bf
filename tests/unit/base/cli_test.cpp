// SPDX-License-Identifier: Apache-2.0
#include "base/cli.hpp"

#include <vector>

#include <doctest/doctest.h>

using namespace sp::cli;

namespace {
const DaemonSpec kRelay{"sallyport-relay", "DMZ relay", "/etc/sallyport/relay.toml", true};
const DaemonSpec kAgent{"sallyport-agent", "agent", "/etc/sallyport/agent.toml", false};

sp::Result<DaemonOptions> parse(const DaemonSpec& spec, std::vector<const char*> args) {
    return parse_daemon_args(spec, args);
}
}  // namespace

TEST_SUITE("base.cli") {
    TEST_CASE("cli: defaults when no flag is given") {
        auto o = parse(kRelay, {});
        REQUIRE(o);
        CHECK(o->config_path == "/etc/sallyport/relay.toml");
        CHECK_FALSE(o->check_config);
        CHECK_FALSE(o->log_level);
        CHECK_FALSE(o->gen_key);
    }

    TEST_CASE("cli: every flag in its spellings") {
        auto o = parse(kRelay, {"-c", "a.toml", "--check-config", "--log-level=debug",
                                "--log-target", "stderr", "--gen-key", "mft-1"});
        REQUIRE(o);
        CHECK(o->config_path == "a.toml");
        CHECK(o->check_config);
        CHECK(o->log_level == sp::log::Level::Debug);
        CHECK(o->log_target == sp::log::Target::Stderr);
        CHECK(o->gen_key == "mft-1");
        CHECK(parse(kRelay, {"-cx.toml"})->config_path == "x.toml");
        CHECK(parse(kRelay, {"--config=y.toml"})->config_path == "y.toml");
        CHECK(parse(kAgent, {"-h"})->help);
        CHECK(parse(kAgent, {"--version"})->version);
    }

    TEST_CASE("cli: bad arguments are usage errors that name the argument") {
        struct Case {
            std::vector<const char*> args;
            const char* needle;
        };
        for (const auto& c : std::vector<Case>{{{"--bogus"}, "--bogus"},
                                               {{"extra"}, "extra"},
                                               {{"-c"}, "-c"},
                                               {{"--log-level", "loud"}, "loud"},
                                               {{"--log-target=syslog"}, "syslog"},
                                               {{"--help=yes"}, "--help"},
                                               {{"--config="}, "--config"}}) {
            auto o = parse(kRelay, c.args);
            REQUIRE_FALSE(o);
            CHECK(o.error().kind == sp::ErrorKind::Usage);
            CHECK(o.error().exit_code() == 2);
            CHECK(o.error().message.find(c.needle) != std::string::npos);
        }
    }

    TEST_CASE("cli: --gen-key is a relay flag only") {
        CHECK_FALSE(parse(kAgent, {"--gen-key", "x"}));
        CHECK(daemon_help(kRelay).find("--gen-key") != std::string::npos);
        CHECK(daemon_help(kAgent).find("--gen-key") == std::string::npos);
    }
}
