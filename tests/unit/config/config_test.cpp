// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "base/wire_limits.hpp"
#include "config/agent_config.hpp"
#include "config/common.hpp"
#include "config/relay_config.hpp"

namespace fs = std::filesystem;
using namespace sp::config;

namespace {

std::vector<fs::path> toml_files(const std::string& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(fs::path(SP_TEST_DATA) / "config" / dir)) {
        if (e.path().extension() == ".toml") {
            out.push_back(e.path());
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

bool is_agent(const fs::path& p) {
    return p.filename().string().starts_with("agent-");
}

sp::Result<void> load(const fs::path& p) {
    if (is_agent(p)) {
        auto c = load_agent_config(p.string());
        return c ? sp::Result<void>{} : sp::Result<void>(sp::Unexpected(c.error()));
    }
    auto c = load_relay_config(p.string());
    return c ? sp::Result<void>{} : sp::Result<void>(sp::Unexpected(c.error()));
}

struct Expect {
    int line = 0;
    int column = 0;
    std::string key;
    std::string message;
};

// The file's leading "# expect: LINE:COL KEY MESSAGE-SUBSTRING" lines, one per
// error in file order; KEY "-" = no key.
std::vector<Expect> read_expect(const fs::path& p) {
    std::ifstream in(p);
    std::vector<Expect> out;
    const std::string tag = "# expect: ";
    for (std::string line; std::getline(in, line) && line.starts_with(tag);) {
        std::istringstream s(line.substr(tag.size()));
        Expect e;
        char colon = 0;
        s >> e.line >> colon >> e.column >> e.key;
        std::getline(s >> std::ws, e.message);
        if (e.key == "-") {
            e.key.clear();
        }
        REQUIRE_MESSAGE((colon == ':' && e.line > 0 && !e.message.empty()), p.string());
        out.push_back(std::move(e));
    }
    REQUIRE_MESSAGE(!out.empty(), p.string() << " lacks an expect line");
    return out;
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<sp::Error> all_errors(const fs::path& p) {
    const std::string text = read_text(p);
    return is_agent(p) ? agent_config_errors(text, p.string())
                       : relay_config_errors(text, p.string());
}

void check_error(const sp::Error& e, const Expect& want, const fs::path& p) {
    CAPTURE(e.describe());
    CHECK(e.kind == sp::ErrorKind::Config);
    CHECK(e.file == p.string());
    CHECK(e.line == want.line);
    CHECK(e.column == want.column);
    CHECK(e.key == want.key);
    CHECK(e.message.find(want.message) != std::string::npos);
    CHECK(e.exit_code() == 2);
    CHECK(e.describe().starts_with(p.string() + ":" + std::to_string(want.line) + ":" +
                                   std::to_string(want.column)));
}

sp::Error relay_error(std::string_view text) {
    auto c = parse_relay_config(text, "t.toml");
    REQUIRE_FALSE(c);
    return c.error();
}

// An agent.toml that passes must be sendable: the CONFIG it becomes fits
// the control protocol's bounds (base/wire_limits.hpp).
std::string agent_head() {
    return "[agent]\nname = \"a\"\n[[relay]]\naddress = \"r:1\"\nkey = \"k\"\n";
}
std::string service(int i, int listens, const std::string& extra = "") {
    std::string s = fmt::format("[[service]]\nname = \"s{}\"\nlisten = [", i);
    for (int j = 0; j < listens; ++j) {
        s += fmt::format("\"127.{}.{}.1:{}\", ", i / 256, i % 256, 1000 + j);
    }
    return s + "]\nbackend = [\"b:1\"]\n" + extra;
}

}  // namespace

TEST_SUITE("config.files") {
    TEST_CASE("config: every file in valid/ loads") {
        const auto files = toml_files("valid");
        CHECK(files.size() >= 8);
        for (const auto& p : files) {
            CAPTURE(p.string());
            auto r = load(p);
            CHECK_MESSAGE(r.has_value(), (r ? std::string() : r.error().describe()));
        }
    }

    TEST_CASE("config: every file in invalid/ gives exactly its expected errors, in order") {
        const auto files = toml_files("invalid");
        CHECK(files.size() >= 30);
        for (const auto& p : files) {
            CAPTURE(p.string());
            const auto want = read_expect(p);
            const auto got = all_errors(p);
            std::string listed;
            for (const auto& e : got) {
                listed += "\n  " + e.describe();
            }
            CAPTURE(listed);
            CHECK(got.size() == want.size());
            for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
                CAPTURE(i);
                check_error(got[i], want[i], p);
            }
            // A start or reload stops at the first, and says how many follow.
            auto r = load(p);
            REQUIRE_FALSE(r.has_value());
            check_error(r.error(), want.front(), p);
            if (want.size() > 1) {
                CHECK(r.error().message.find(fmt::format("and {} more error", want.size() - 1)) !=
                      std::string::npos);
            }
        }
    }

    TEST_CASE("config: every file in valid/ has no error when all are collected") {
        for (const auto& p : toml_files("valid")) {
            CAPTURE(p.string());
            const auto errors = all_errors(p);
            CHECK_MESSAGE(errors.empty(), (errors.empty() ? "" : errors.front().describe()));
        }
    }
}

TEST_SUITE("config.all_errors") {
    TEST_CASE("all errors: a typo for a required key is one error, not two") {
        // [auht] was meant as [auth]: "no agent authentication" would repeat it.
        auto e = relay_config_errors("[auht]\nkeys = \"k\"\n", "t.toml");
        REQUIRE(e.size() == 1);
        CHECK(e[0].message.find("did you mean \"auth\"") != std::string::npos);
        // name misspelt in [agent], address misspelt in [[relay]], a misplaced
        // listen: each is reported once, where it is.
        e = agent_config_errors(
            "[agent]\nnmae = \"a\"\n[[relay]]\naddres = \"r:1\"\nkey = \"k\"\n"
            "[[service]]\nname = \"s\"\nlisten = [\"0.0.0.0:1\"]\nbakend = [\"b:1\"]\n",
            "t.toml");
        REQUIRE(e.size() == 3);
        CHECK(e[0].key == "agent.nmae");
        CHECK(e[1].key == "relay[0].addres");
        CHECK(e[2].key == "service[0].bakend");
    }

    TEST_CASE("all errors: an unrelated typo does not hide a missing requirement") {
        const auto e =
            relay_config_errors("[relay]\nthreds = 1\n[auth]\ncertificate = \"c\"\n", "t.toml");
        REQUIRE(e.size() == 2);
        CHECK(e[0].key == "relay.threds");
        CHECK(e[1].key == "auth.private_key");
        CHECK(e[1].line == 3);
    }

    TEST_CASE("all errors: a syntax error is the only error") {
        const auto e = relay_config_errors("[relay]\nthreads = 5000\n[auth\n", "t.toml");
        REQUIRE(e.size() == 1);
        CHECK(e[0].message.find("TOML syntax error") != std::string::npos);
    }

    TEST_CASE("all errors: at most 100 are kept, then one says how many more") {
        std::string text = "[auth]\nkeys = \"k\"\nallow_agents = [";
        for (int i = 0; i < 150; ++i) {
            text += "\"bad\", ";
        }
        text += "]\n";
        const auto e = relay_config_errors(text, "t.toml");
        REQUIRE(e.size() == 101);
        CHECK(e[99].key == "auth.allow_agents[99]");
        CHECK(e[100].message == "50 more errors not shown");
        auto first = parse_relay_config(text, "t.toml");
        REQUIRE_FALSE(first);
        CHECK(first.error().key == "auth.allow_agents[0]");
        CHECK(first.error().message.find("and 149 more errors") != std::string::npos);
    }
}

TEST_SUITE("config.examples") {
    TEST_CASE("examples: the packaged /etc/sallyport files are valid once uncommented") {
        // debian/examples/*.toml ship with every setting commented out as
        // "#key = value"; an admin uncomments lines, so each must be valid.
        const fs::path dir = fs::path(SP_TEST_DATA) / ".." / ".." / "debian" / "examples";
        for (const char* name : {"relay.toml", "agent.toml"}) {
            CAPTURE(name);
            std::istringstream in(read_text(dir / name));
            std::string text;
            for (std::string line; std::getline(in, line);) {
                const bool setting =
                    line.size() > 1 && line[0] == '#' &&
                    (std::isalpha(static_cast<unsigned char>(line[1])) != 0 || line[1] == '[');
                text += (setting ? line.substr(1) : line) + "\n";
            }
            REQUIRE(text.find("[") != std::string::npos);
            const auto errors = std::string(name) == "relay.toml" ? relay_config_errors(text, name)
                                                                  : agent_config_errors(text, name);
            CHECK_MESSAGE(errors.empty(), (errors.empty() ? "" : errors.front().describe()));
        }
    }
}

TEST_SUITE("config.relay") {
    TEST_CASE("relay: defaults match SPEC when only [auth] is set") {
        auto c = parse_relay_config("[auth]\nkeys = \"/k\"\n", "/etc/sallyport/relay.toml");
        REQUIRE(c);
        CHECK(c->path == "/etc/sallyport/relay.toml");
        CHECK(c->relay.threads == 0);
        CHECK(c->relay.data_path == DataPath::Splice);
        REQUIRE(c->relay.control_listen.size() == 1);
        CHECK(c->relay.control_listen[0].to_string() == "0.0.0.0:44500");
        REQUIRE(c->relay.allow_listen.size() == 1);
        CHECK(c->relay.allow_listen[0].to_string() == "0.0.0.0:1-65535");
        CHECK(c->relay.status_socket == "/run/sallyport/relay.sock");
        CHECK(c->relay.drain_timeout_s == 30);
        CHECK(c->limits.max_sessions == 100000);
        CHECK(c->limits.max_sessions_per_client == 0);
        CHECK(c->limits.max_new_sessions_per_client_per_s == 0);
        CHECK(c->limits.pending_timeout_ms == 10000);
        CHECK(c->limits.handshake_timeout_ms == 5000);
        CHECK(c->limits.idle_timeout_s == 0);
        CHECK(c->limits.listener_grace_ms == 0);
        CHECK(c->limits.max_outbound_sessions == 0);
        CHECK(c->limits.max_outbound_sessions_per_agent == 0);
        CHECK(c->outbound_allow.empty());
        CHECK(c->outbound_connect_timeout_ms == 10000);
        CHECK(c->auth.allow_agents.empty());
        CHECK(c->shared_key_mode());
    }

    TEST_CASE("relay: relative key and certificate paths resolve against the config directory") {
        auto k = parse_relay_config("[auth]\nkeys = \"my.keys\"\n", "/etc/sallyport/relay.toml");
        REQUIRE(k);
        CHECK(k->auth.keys == "/etc/sallyport/my.keys");
        auto c = parse_relay_config(
            "[auth]\ncertificate = \"c.pem\"\nprivate_key = \"/abs/k.pem\"\n"
            "agent_ca = \"ca/agents.pem\"\n",
            "/etc/sallyport/relay.toml");
        REQUIRE(c);
        CHECK(c->auth.keys.empty());
        CHECK(c->auth.certificate == "/etc/sallyport/c.pem");
        CHECK(c->auth.private_key == "/abs/k.pem");
        CHECK(c->auth.agent_ca == "/etc/sallyport/ca/agents.pem");
    }

    TEST_CASE("relay: without a mode, keys default to relay.keys beside the file") {
        for (const char* text : {"", "[relay]\nthreads = 1\n", "[auth]\nallow_agents = []\n",
                                 "[auth]\ncertificate = \"\"\n"}) {
            CAPTURE(text);
            auto c = parse_relay_config(text, "/etc/sallyport/relay.toml");
            REQUIRE(c);
            CHECK(c->shared_key_mode());
            CHECK(c->auth.keys == "/etc/sallyport/relay.keys");
        }
        auto cert =
            load_relay_config(std::string(SP_TEST_DATA) + "/config/valid/relay-cert-mode.toml");
        REQUIRE(cert);
        CHECK_FALSE(cert->shared_key_mode());
        CHECK(cert->auth.keys.empty());
    }

    TEST_CASE("relay: the example file carries every documented value") {
        auto c = load_relay_config(std::string(SP_TEST_DATA) + "/config/valid/relay-example.toml");
        REQUIRE(c);
        CHECK(c->auth.keys == "/etc/sallyport/relay.keys");
        CHECK_FALSE(c->auth.certificate.size());
        CHECK(c->limits.max_sessions == 100000);
    }

    TEST_CASE("relay: every setting is read when all are given") {
        auto c =
            load_relay_config(std::string(SP_TEST_DATA) + "/config/valid/relay-cert-mode.toml");
        REQUIRE(c);
        CHECK(c->relay.threads == 4);
        CHECK(c->relay.data_path == DataPath::Copy);
        CHECK(c->relay.control_listen.size() == 2);
        CHECK(c->relay.control_listen[0].family() == AF_INET6);
        CHECK(c->relay.allow_listen.size() == 3);
        CHECK(c->relay.drain_timeout_s == 0);
        CHECK_FALSE(c->shared_key_mode());
        CHECK(c->auth.allow_agents.size() == 3);
        CHECK(c->auth.allow_agents[2].prefix() == 32);
        CHECK(c->auth.deny_agents.size() == 1);
        CHECK(c->limits.max_sessions == 1);
        CHECK(c->limits.max_sessions_per_client == 10);
        CHECK(c->limits.max_new_sessions_per_client_per_s == 5);
        CHECK(c->limits.pending_timeout_ms == 1);
        CHECK(c->limits.handshake_timeout_ms == 3600000);
        CHECK(c->limits.idle_timeout_s == 600);
        CHECK(c->limits.listener_grace_ms == 9000);
        CHECK(c->limits.max_outbound_sessions == 200);
        CHECK(c->limits.max_outbound_sessions_per_agent == 20);
        CHECK(c->outbound_connect_timeout_ms == 2500);
        REQUIRE(c->outbound_allow.size() == 4);
        CHECK(c->outbound_allow[0].host == "partner.example.com");
        CHECK_FALSE(c->outbound_allow[0].cidr);
        CHECK(c->outbound_allow[0].ports == sp::PortRange{443, 443});
        CHECK(c->outbound_allow[1].cidr->to_string() == "198.51.100.0/24");
        CHECK(c->outbound_allow[2].cidr->prefix() == 48);
        CHECK(c->outbound_allow[2].ports == sp::PortRange{1, 1024});
        CHECK(c->outbound_allow[3].host.empty());
        CHECK(c->outbound_allow[3].cidr->prefix() == 32);
    }

    TEST_CASE("relay: listen_allowed needs the same IP or a same-family wildcard and all ports") {
        auto c = parse_relay_config(
            "[relay]\nallow_listen = [\"0.0.0.0:1000-2000\", \"203.0.113.5:22\", "
            "\"[2001:db8::1]:443\"]\n[auth]\nkeys = \"k\"\n",
            "t.toml");
        REQUIRE(c);
        const auto hp = [](const char* s) { return *sp::HostPorts::parse(s, true); };
        CHECK(listen_allowed(*c, hp("0.0.0.0:1000-2000")));
        CHECK(listen_allowed(*c, hp("198.51.100.7:1500")));
        CHECK_FALSE(listen_allowed(*c, hp("198.51.100.7:999-1000")));
        CHECK(listen_allowed(*c, hp("203.0.113.5:22")));
        CHECK_FALSE(listen_allowed(*c, hp("203.0.113.6:22")));
        CHECK(listen_allowed(*c, hp("[::ffff:203.0.113.5]:22")));
        CHECK(listen_allowed(*c, hp("[2001:db8::1]:443")));
        CHECK_FALSE(listen_allowed(*c, hp("[2001:db8::2]:443")));
        CHECK_FALSE(listen_allowed(*c, hp("[::]:1500")));
        CHECK_FALSE(listen_allowed(*c, hp("relay.example.net:1500")));
    }

    TEST_CASE("relay: listen_allowed is false for everything when allow_listen is empty") {
        auto c = parse_relay_config("[relay]\nallow_listen = []\n[auth]\nkeys = \"k\"\n", "t");
        REQUIRE(c);
        CHECK_FALSE(listen_allowed(*c, *sp::HostPorts::parse("0.0.0.0:22", false)));
    }

    TEST_CASE("relay: outbound_allowed matches names, CIDRs and port ranges") {
        auto c = parse_relay_config(
            "[auth]\nkeys = \"k\"\n[outbound]\nallow = [\"Partner.example.com:443\", "
            "\"10.0.0.0/8:20-22\", \"[2001:db8::/32]:443\"]\n",
            "t");
        REQUIRE(c);
        const auto ip = [](const char* s) { return *sp::IpAddress::parse(s); };
        CHECK(outbound_allowed(*c, "partner.EXAMPLE.com", ip("192.0.2.1"), 443));
        CHECK_FALSE(outbound_allowed(*c, "partner.example.com", ip("192.0.2.1"), 80));
        CHECK_FALSE(outbound_allowed(*c, "", ip("192.0.2.1"), 443));
        CHECK(outbound_allowed(*c, "", ip("10.1.2.3"), 22));
        CHECK_FALSE(outbound_allowed(*c, "", ip("10.1.2.3"), 23));
        CHECK(outbound_allowed(*c, "", ip("2001:db8::5"), 443));
        CHECK_FALSE(outbound_allowed(*c, "", ip("2001:db9::5"), 443));
    }

    TEST_CASE("relay: outbound limits and connect timeout are range-checked") {
        CHECK(relay_error("[auth]\nkeys = \"k\"\n[limits]\nmax_outbound_sessions = -1\n")
                  .describe()
                  .find("limits.max_outbound_sessions") != std::string::npos);
        CHECK(relay_error("[auth]\nkeys = \"k\"\n[outbound]\nconnect_timeout_ms = 0\n")
                  .describe()
                  .find("outbound.connect_timeout_ms") != std::string::npos);
        auto c = parse_relay_config(
            "[auth]\nkeys = \"k\"\n[limits]\nmax_outbound_sessions_per_agent = 0\n", "t");
        REQUIRE(c);
        CHECK(c->limits.max_outbound_sessions_per_agent == 0);
    }

    TEST_CASE("relay: describe() names FILE:LINE:COL and the key") {
        const auto e = relay_error("[relay]\nthreads = 4096\n[auth]\nkeys = \"k\"\n");
        CHECK(e.describe() == "t.toml:2:11: relay.threads: 4096 is out of range (0-1024)");
    }

    TEST_CASE("relay: an unknown key far from every allowed key gets no hint") {
        const auto e = relay_error("[auth]\nkeys = \"k\"\n[limits]\nzzzzzzzzzz = 1\n");
        CHECK(e.message == "unknown key \"zzzzzzzzzz\"");
    }

    TEST_CASE("relay: a huge unknown key is cut in the message") {
        const auto e = relay_error("[relay]\n" + std::string(5000, 'q') + " = 1\n");
        CHECK(e.message.size() < 200);
    }

    TEST_CASE("relay: a missing file is a config error naming the file") {
        auto c = load_relay_config("/nonexistent/relay.toml");
        REQUIRE_FALSE(c);
        CHECK(c.error().kind == sp::ErrorKind::Config);
        CHECK(c.error().file == "/nonexistent/relay.toml");
        CHECK(c.error().code == ENOENT);
    }

    TEST_CASE("relay: a directory is refused as a config file") {
        auto c = load_relay_config(SP_TEST_DATA);
        REQUIRE_FALSE(c);
        CHECK(c.error().message.find("not a regular file") != std::string::npos);
    }

    TEST_CASE("relay: binary garbage is a syntax error, not a crash") {
        const std::string junk("\x00\xff[[\x01=\"", 7);
        const auto e = relay_error(junk);
        CHECK(e.kind == sp::ErrorKind::Config);
        CHECK(e.line >= 1);
    }
}

TEST_SUITE("config.agent") {
    TEST_CASE("agent: defaults match SPEC for a minimal file") {
        auto c = parse_agent_config(
            "[agent]\nname = \"a\"\n[[relay]]\naddress = \"r.example:44500\"\nkey = "
            "\"agent.key\"\n",
            "/etc/sallyport/agent.toml");
        REQUIRE(c);
        CHECK(c->agent.name == "a");
        CHECK(c->agent.status_socket == "/run/sallyport/agent.sock");
        CHECK(c->agent.pool == 8);
        CHECK(c->agent.threads == 0);
        CHECK(c->agent.data_path == DataPath::Splice);
        REQUIRE(c->relays.size() == 1);
        CHECK(c->relays[0].address.host == "r.example");
        CHECK_FALSE(c->relays[0].address.ip);
        CHECK(c->relays[0].address.ports.first == 44500);
        CHECK(c->relays[0].key == "/etc/sallyport/agent.key");
        CHECK(c->relays[0].shared_key_mode());
        CHECK_FALSE(c->relays[0].standby);
        CHECK(c->services.empty());
        CHECK(c->outbound.socks5_listen.empty());
        CHECK_FALSE(c->outbound.enabled());
    }

    TEST_CASE("agent: every setting is read when all are given") {
        auto c = load_agent_config(std::string(SP_TEST_DATA) + "/config/valid/agent-full.toml");
        REQUIRE(c);
        CHECK(c->agent.name == "mft_2.internal-A");
        CHECK(c->agent.status_socket == "/run/sp/a.sock");
        CHECK(c->agent.pool == 0);
        CHECK(c->agent.threads == 1024);
        CHECK(c->agent.data_path == DataPath::Copy);
        REQUIRE(c->relays.size() == 2);
        CHECK_FALSE(c->relays[1].shared_key_mode());
        CHECK(c->relays[1].standby);
        CHECK(c->relays[1].relay_ca == "/etc/sallyport/relay-ca.crt");
        REQUIRE(c->services.size() == 3);
        const auto& s = c->services[0];
        CHECK(s.name == "https");
        CHECK(s.listen.size() == 2);
        CHECK(s.backend.size() == 3);
        CHECK(s.backend[2].ip);
        CHECK(s.proxy_protocol == ProxyProtocol::V2);
        CHECK(s.allow_clients.size() == 2);
        CHECK(s.deny_clients.size() == 1);
        CHECK(s.max_sessions == 1000);
        CHECK(s.affinity_s == 2592000);
        CHECK(s.health_check_interval_ms == 3600000);
        CHECK(s.health_check_timeout_ms == 3599999);
        CHECK(s.health_check_rise == 100);
        CHECK(s.health_check_fall == 1);
        CHECK(s.affinity_group == "ftp.sites");
        CHECK(c->services[1].affinity_group.empty());
        CHECK(c->services[1].proxy_protocol == ProxyProtocol::V1);
        CHECK(c->services[1].listen[0].ports.size() == 100);
        CHECK(c->outbound.socks5_listen == "127.0.0.1:1080");
        CHECK(c->outbound.http_proxy_listen == "127.0.0.1:3128");
        CHECK(c->outbound.users == "/etc/sallyport/outbound.users");
        CHECK(c->outbound.allow_clients.size() == 2);
        CHECK(c->outbound.deny_clients.size() == 1);
        CHECK(c->outbound.enabled());
    }

    TEST_CASE("agent: health checks default on, and a short interval alone is valid") {
        auto c = parse_agent_config(agent_head() + service(0, 1) +
                                        service(1, 1, "health_check_interval_ms = 200\n") +
                                        service(2, 1, "health_check_interval_ms = 0\n"),
                                    "t.toml");
        REQUIRE(c);
        REQUIRE(c->services.size() == 3);
        const auto& d = c->services[0];
        CHECK(d.health_check_interval_ms == 2000);
        CHECK(d.health_check_timeout_ms == 1000);
        CHECK(d.health_check_rise == 2);
        CHECK(d.health_check_fall == 3);
        // The unset timeout follows a short interval down to half of it.
        CHECK(c->services[1].health_check_interval_ms == 200);
        CHECK(c->services[1].health_check_timeout_ms == 100);
        CHECK(c->services[2].health_check_interval_ms == 0);
    }

    TEST_CASE("agent: a check timeout given is held below the interval, default or not") {
        auto e = parse_agent_config(
            agent_head() + service(0, 1, "health_check_timeout_ms = 2000\n"), "t.toml");
        REQUIRE_FALSE(e);
        CHECK(e.error().key == "service[0].health_check_timeout_ms");
        CHECK(e.error().line == 10);
        CHECK(e.error().message.find("health_check_interval_ms (2000)") != std::string::npos);
        // With checks off the timeout is not compared.
        CHECK(parse_agent_config(
            agent_head() +
                service(0, 1, "health_check_interval_ms = 0\nhealth_check_timeout_ms = 5000\n"),
            "t.toml"));
    }

    TEST_CASE("agent: affinity_group \"\" is the default group") {
        auto c =
            parse_agent_config(agent_head() + service(0, 1, "affinity_group = \"\"\n"), "t.toml");
        REQUIRE(c);
        CHECK(c->services[0].affinity_group.empty());
    }

    TEST_CASE("agent: the example file's services map port ranges one to one") {
        auto c = load_agent_config(std::string(SP_TEST_DATA) + "/config/valid/agent-example.toml");
        REQUIRE(c);
        CHECK(c->agent.name == "mft-1");
        REQUIRE(c->services.size() == 3);
        CHECK(c->services[2].listen[0].ports.size() == c->services[2].backend[0].ports.size());
    }

    TEST_CASE("agent: 0.0.0.0 and [::] on the same port do not collide") {
        auto c = parse_agent_config(
            "[agent]\nname = \"a\"\n[[relay]]\naddress = \"r:1\"\nkey = \"k\"\n"
            "[[service]]\nname = \"v4\"\nlisten = [\"0.0.0.0:22\"]\nbackend = [\"b:22\"]\n"
            "[[service]]\nname = \"v6\"\nlisten = [\"[::]:22\"]\nbackend = [\"b:22\"]\n",
            "t");
        CHECK(c);
    }
}

TEST_SUITE("config.wire") {
    TEST_CASE("wire: 4096 listen entries in all pass, the 4097th is refused where it is") {
        std::string text = agent_head();
        for (int i = 0; i < 16; ++i) {
            text += service(i, 256);
        }
        CHECK(parse_agent_config(text, "t.toml"));
        text += service(16, 1);
        const auto e = agent_config_errors(text, "t.toml");
        REQUIRE(e.size() == 1);
        CHECK(e[0].key == "service[16].listen[0]");
        CHECK(e[0].message.find("at most 4096") != std::string::npos);
        CHECK(e[0].line > 16 * 4);
    }

    TEST_CASE("wire: 1024 services pass, the 1025th is refused at its [[service]]") {
        std::string text = agent_head();
        for (int i = 0; i < 1024; ++i) {
            text += service(i, 1);
        }
        CHECK(parse_agent_config(text, "t.toml"));
        const int line = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
        text += service(1024, 1);
        const auto e = agent_config_errors(text, "t.toml");
        REQUIRE(e.size() == 1);
        CHECK(e[0].key == "service[1024]");
        CHECK(e[0].line == line);
        CHECK(e[0].message.find("at most 1024") != std::string::npos);
    }

    TEST_CASE("wire: a CONFIG over 1 MiB is refused at the service that crosses it") {
        // 2 x 1024 IPv6 CIDRs of 39 bytes per service: 12 services make
        // more than 1 MiB, though every list is within its own bound.
        std::string cidrs = "[";
        for (int j = 0; j < 1024; ++j) {
            cidrs += fmt::format("\"2001:db8:{:x}:ffff:ffff:ffff:ffff:0/112\", ", j);
        }
        cidrs += "]";
        const std::string lists =
            fmt::format("allow_clients = {}\ndeny_clients = {}\n", cidrs, cidrs);
        std::string text = agent_head();
        auto one = parse_agent_config(text + service(0, 1, lists), "t.toml");
        REQUIRE(one);
        const size_t per_service = wire_config_size(*one) - sp::wire::kConfigFixed;
        const size_t fit = (sp::wire::kMaxFrame - sp::wire::kConfigFixed) / per_service;
        REQUIRE(fit < 20);
        for (size_t i = 0; i < fit; ++i) {
            text += service(static_cast<int>(i), 1, lists);
        }
        auto ok = parse_agent_config(text, "t.toml");
        REQUIRE(ok);
        CHECK(wire_config_size(*ok) <= sp::wire::kMaxFrame);
        text += service(static_cast<int>(fit), 1, lists);
        const auto e = agent_config_errors(text, "t.toml");
        REQUIRE(e.size() == 1);
        CHECK(e[0].key == fmt::format("service[{}]", fit));
        CHECK(e[0].message.find("CONFIG message of") != std::string::npos);
    }
}

TEST_SUITE("config.common") {
    TEST_CASE("common: data_path names round trip and unknown names are refused") {
        CHECK(parse_data_path("splice") == DataPath::Splice);
        CHECK(parse_data_path("copy") == DataPath::Copy);
        CHECK_FALSE(parse_data_path("Splice"));
        CHECK_FALSE(parse_data_path(""));
        CHECK(data_path_name(DataPath::Splice) == "splice");
        CHECK(data_path_name(DataPath::Copy) == "copy");
    }
}

TEST_SUITE("config.toml") {
    TEST_CASE("toml: non-ASCII text in strings and comments is kept as written") {
        auto c = load_relay_config(std::string(SP_TEST_DATA) +
                                   "/config/valid/relay-non-ascii-text.toml");
        REQUIRE(c);
        CHECK(c->relay.status_socket == "/run/sallyport/caf\xc3\xa9.sock");
        CHECK(c->auth.certificate == "/etc/sallyport/\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87.crt");
        CHECK(c->auth.private_key == "/etc/sallyport/\xc3\xa9.pem");
        CHECK(c->auth.agent_ca == "/etc/sallyport/ca\xc3\xa9.pem");
    }

    TEST_CASE("toml: inputs that trip toml++ 3.3 assertions or UB are plain syntax errors") {
        for (const char* text :
             {"[#", "[[[1]]]", "[[=", "\xc3\xa9 = 1", "a = [\xef\xb4\xbf]", "\xcc\xaa",
              "a = \"\"\"\\\n\xc2\xa7\"\"\"", "allow = [628236.\".1.1\xc3\xa9/24\"]",
              "a = \"\xed\xa0\x80\"", "a = \"\xc0\xaf\"", "b = 19'''79-05-27T\xc3\xa9\"\""}) {
            CAPTURE(text);
            auto c = parse_relay_config(text, "t.toml");
            REQUIRE_FALSE(c);
            CHECK(c.error().kind == sp::ErrorKind::Config);
            CHECK(c.error().line >= 1);
        }
    }

    TEST_CASE("toml: multi-line strings with extra closing quotes do not confuse the guard") {
        auto c = parse_relay_config(
            "[auth]\ncertificate = \"\"\"k\"\"\"\"\"\nprivate_key = \"\xc3\xa9\"\n"
            "agent_ca = 'c'\n",
            "/t.toml");
        REQUIRE(c);
        CHECK(c->auth.certificate == "/k\"\"");
    }
}
