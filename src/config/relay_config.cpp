// SPDX-License-Identifier: Apache-2.0
#include "config/relay_config.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "config/keys.hpp"
#include "config/metrics_listen.hpp"
#include "config/parse_util.hpp"
#include "config/toml_include.hpp"

namespace sp::config {

namespace {

using detail::Diagnostics;
using detail::TableReader;

// Range choices (SPEC leaves them open):
// - threads: 1024 is far beyond any sane core count and bounds thread creation.
// - timeouts in ms must be > 0 (0 would reject every handshake or pending
//   client at once) and at most an hour; longer only hides a broken peer.
// - drain_timeout_s may be 0 (stop without waiting), at most a day.
// - idle_timeout_s: 0 = none, at most a year.
// - session counts: at most 10 million, beyond the fd limit of any host.
constexpr uint32_t kMaxThreads = 1024;
constexpr uint32_t kMaxTimeoutMs = 3'600'000;
constexpr uint32_t kMaxDrainS = 86'400;
constexpr uint32_t kMaxIdleS = 31'536'000;
constexpr uint32_t kMaxSessions = 10'000'000;
constexpr uint32_t kMaxRate = 1'000'000;

// Shared-key mode's file when [auth] names no mode: beside relay.toml, so
// /etc/sallyport/relay.keys for the installed configuration.
constexpr std::string_view kDefaultKeys = "relay.keys";

constexpr std::array<std::string_view, 4> kRootKeys = {"relay", "auth", "limits", "outbound"};
constexpr std::array<std::string_view, 7> kRelayKeys = {
    "threads",       "data_path",      "control_listen", "allow_listen",
    "status_socket", "metrics_listen", "drain_timeout_s"};
constexpr std::array<std::string_view, 6> kAuthKeys = {"keys",     "certificate",  "private_key",
                                                       "agent_ca", "allow_agents", "deny_agents"};
constexpr std::array<std::string_view, 9> kLimitsKeys = {
    "max_sessions",       "max_sessions_per_client", "max_new_sessions_per_client_per_s",
    "pending_timeout_ms", "handshake_timeout_ms",    "idle_timeout_s",
    "listener_grace_ms",  "max_outbound_sessions",   "max_outbound_sessions_per_agent"};
constexpr std::array<std::string_view, 2> kOutboundKeys = {"allow", "connect_timeout_ms"};
constexpr std::array<detail::SchemaTable, 4> kSchema = {{
    {"relay", kRelayKeys},
    {"auth", kAuthKeys},
    {"limits", kLimitsKeys},
    {"outbound", kOutboundKeys},
}};

void parse_relay_section(const TableReader& r, RelaySection& s, Diagnostics& d) {
    r.check_keys(kRelayKeys, d);
    d.ok(r.read_uint("threads", 0, kMaxThreads, s.threads));
    d.ok(detail::read_data_path(r, s.data_path));
    d.ok(r.read_uint("drain_timeout_s", 0, kMaxDrainS, s.drain_timeout_s));

    if (auto sock = r.string_item("status_socket"); d.ok(sock) && *sock) {
        if (d.ok(detail::check_socket_path(r, **sock, "status_socket"))) {
            s.status_socket = (*sock)->value;
        }
    }
    d.ok(detail::read_metrics_listen(r, s.metrics_listen));

    if (auto control = r.strings("control_listen"); d.ok(control) && *control) {
        if ((*control)->empty()) {
            d.add(r.error(detail::pos_of(*r.table().get("control_listen")), "control_listen",
                          "needs at least one address (omit the key for 0.0.0.0:44500)"));
        }
        std::vector<SocketAddress> addrs;
        for (const auto& item : **control) {
            auto a = SocketAddress::parse(item.value);
            if (!a) {
                d.add(detail::relocate(r, item, std::move(a.error())));
                continue;
            }
            if (std::find(addrs.begin(), addrs.end(), *a) != addrs.end()) {
                d.add(detail::config_error(r.file(), item.pos, item.key,
                                           fmt::format("{} is listed twice", a->to_string())));
                continue;
            }
            addrs.push_back(*a);
        }
        if (!addrs.empty()) {
            s.control_listen = std::move(addrs);
        }
    }

    if (auto allow = r.strings("allow_listen"); d.ok(allow) && *allow) {
        // An empty list is accepted on purpose: agents may then open nothing,
        // a lock-down an admin may want during maintenance.
        s.allow_listen.clear();
        for (const auto& item : **allow) {
            auto hp = HostPorts::parse(item.value, true);
            if (!hp) {
                d.add(detail::relocate(r, item, std::move(hp.error())));
                continue;
            }
            if (!hp->ip) {
                d.add(detail::config_error(
                    r.file(), item.pos, item.key,
                    fmt::format("\"{}\" is not a literal IP address (names are not allowed here)",
                                hp->host)));
                continue;
            }
            s.allow_listen.push_back(std::move(*hp));
        }
    }
}

void parse_auth_section(const TableReader& r, AuthSection& a, Diagnostics& d) {
    r.check_keys(kAuthKeys, d);
    d.ok(r.read_path("keys", a.keys));
    d.ok(r.read_path("certificate", a.certificate));
    d.ok(r.read_path("private_key", a.private_key));
    d.ok(r.read_path("agent_ca", a.agent_ca));
    for (const auto& [k, out] :
         {std::pair{"allow_agents", &a.allow_agents}, std::pair{"deny_agents", &a.deny_agents}}) {
        if (auto items = r.strings(k); d.ok(items) && *items) {
            *out = detail::parse_cidrs(r, **items, d);
        }
    }
}

// Exactly one mode (sallyport.toml(5), [auth]): the three certificate keys
// together select certificate mode; otherwise shared keys are used, from
// `keys` or its default. A relay serves its agents in one mode, and keys
// left beside a certificate configuration would be a second way in that an
// admin who switched modes believes closed.
Result<void> check_auth_modes(const TableReader& r, AuthSection& a) {
    const std::array<std::pair<std::string_view, const std::string*>, 3> cert = {{
        {"certificate", &a.certificate},
        {"private_key", &a.private_key},
        {"agent_ca", &a.agent_ca},
    }};
    int set = 0;
    for (const auto& c : cert) {
        set += c.second->empty() ? 0 : 1;
    }
    if (const toml::node* keys = r.table().get("keys"); keys != nullptr) {
        if (a.keys.empty()) {
            return r.error(detail::pos_of(*keys), "keys",
                           "an empty file name (omit keys for the default, relay.keys next to "
                           "this file)");
        }
        if (set != 0) {
            return r.error(detail::pos_of(*keys), "keys",
                           "choose one mode: keys (shared keys) or certificate, private_key and "
                           "agent_ca (certificate mode), not both");
        }
        return {};
    }
    if (set != 0 && set != 3) {
        for (const auto& c : cert) {
            if (c.second->empty()) {
                return r.missing(c.first,
                                 fmt::format("certificate mode needs certificate, private_key "
                                             "and agent_ca together; {} is not set",
                                             c.first));
            }
        }
    }
    if (set == 0) {
        a.keys = detail::resolve_path(r.file(), std::string(kDefaultKeys));
    }
    return {};
}

void parse_limits_section(const TableReader& r, LimitsSection& l, Diagnostics& d) {
    r.check_keys(kLimitsKeys, d);
    d.ok(r.read_uint("max_sessions", 1, kMaxSessions, l.max_sessions));
    d.ok(r.read_uint("max_sessions_per_client", 0, kMaxSessions, l.max_sessions_per_client));
    d.ok(r.read_uint("max_new_sessions_per_client_per_s", 0, kMaxRate,
                     l.max_new_sessions_per_client_per_s));
    d.ok(r.read_uint("pending_timeout_ms", 1, kMaxTimeoutMs, l.pending_timeout_ms));
    d.ok(r.read_uint("handshake_timeout_ms", 1, kMaxTimeoutMs, l.handshake_timeout_ms));
    d.ok(r.read_uint("idle_timeout_s", 0, kMaxIdleS, l.idle_timeout_s));
    d.ok(r.read_uint("listener_grace_ms", 0, kMaxTimeoutMs, l.listener_grace_ms));
    d.ok(r.read_uint("max_outbound_sessions", 0, kMaxSessions, l.max_outbound_sessions));
    d.ok(r.read_uint("max_outbound_sessions_per_agent", 0, kMaxSessions,
                     l.max_outbound_sessions_per_agent));
}

Result<PortRange> parse_ports(std::string_view text, std::string_view whole) {
    // Reuse HostPorts' port grammar (1-65535, P1-P2, ordered) behind a dummy host.
    auto hp = HostPorts::parse(fmt::format("h:{}", text), true);
    if (!hp) {
        return usage_error("invalid port or port range \"{}\" in \"{}\"", text, whole);
    }
    return hp->ports;
}

Result<OutboundRule> parse_outbound_rule(std::string_view text) {
    OutboundRule rule;
    if (text.find('/') != std::string_view::npos) {
        std::string_view cidr;
        std::string_view ports;
        if (!text.empty() && text.front() == '[') {
            const auto close = text.find("]:");
            if (close == std::string_view::npos) {
                return usage_error("invalid entry \"{}\" (expected [V6CIDR]:P1-P2)", text);
            }
            cidr = text.substr(1, close - 1);
            ports = text.substr(close + 2);
            if (cidr.find(':') == std::string_view::npos) {
                return usage_error("brackets are for IPv6 only in \"{}\"", text);
            }
        } else {
            const auto colon = text.rfind(':');
            if (colon == std::string_view::npos) {
                return usage_error("invalid entry \"{}\" (expected CIDR:P1-P2)", text);
            }
            cidr = text.substr(0, colon);
            ports = text.substr(colon + 1);
            if (cidr.find(':') != std::string_view::npos) {
                return usage_error(
                    "invalid entry \"{}\" (IPv6 CIDRs need brackets: [2001:db8::/32]:P1-P2)", text);
            }
        }
        auto c = Cidr::parse(cidr);
        if (!c) {
            return Unexpected(std::move(c.error()));
        }
        auto p = parse_ports(ports, text);
        if (!p) {
            return Unexpected(std::move(p.error()));
        }
        rule.cidr = *c;
        rule.ports = *p;
        return rule;
    }
    auto hp = HostPorts::parse(text, true);
    if (!hp) {
        return Unexpected(std::move(hp.error()));
    }
    if (hp->ip) {
        // A literal address is the one-address CIDR: matching then needs no
        // special case, and `host` stays what the header says (a name).
        auto c = Cidr::parse(hp->ip->to_string());
        if (!c) {
            return Unexpected(std::move(c.error()));
        }
        rule.cidr = *c;
    } else {
        rule.host = hp->host;
    }
    rule.ports = hp->ports;
    return rule;
}

void parse_outbound_section(const TableReader& r, RelayConfig& cfg, Diagnostics& d) {
    r.check_keys(kOutboundKeys, d);
    d.ok(r.read_uint("connect_timeout_ms", 1, kMaxTimeoutMs, cfg.outbound_connect_timeout_ms));
    std::vector<OutboundRule>& ret_rules = cfg.outbound_allow;
    auto items = r.strings("allow");
    if (!d.ok(items) || !*items) {
        return;
    }
    for (const auto& item : **items) {
        auto rule = parse_outbound_rule(item.value);
        if (!rule) {
            d.add(detail::relocate(r, item, std::move(rule.error())));
            continue;
        }
        ret_rules.push_back(std::move(*rule));
    }
}

/// Every check of relay.toml; errors go to `d`, and the values that passed
/// their own checks into the result.
RelayConfig parse_relay(std::string_view text, const std::string& path, Diagnostics& d) {
    RelayConfig cfg;
    cfg.path = path;
    cfg.relay.control_listen = {SocketAddress(IpAddress::v4(0), 44500)};
    cfg.relay.allow_listen = {HostPorts{"0.0.0.0", IpAddress::v4(0), PortRange{1, 65535}}};

    auto doc = detail::parse_document(text, path);
    if (!d.ok(doc)) {
        return cfg;  // toml++ stops at the first syntax error: nothing more to check
    }
    const TableReader root(path, *doc, "", kSchema);
    root.check_keys(kRootKeys, d);

    auto relay = root.sub_table("relay");
    if (d.ok(relay) && *relay != nullptr) {
        parse_relay_section(TableReader(path, **relay, "relay", kSchema), cfg.relay, d);
    }

    auto auth = root.sub_table("auth");
    const size_t errors_before_auth = d.count();
    if (d.ok(auth) && *auth != nullptr) {
        parse_auth_section(TableReader(path, **auth, "auth", kSchema), cfg.auth, d);
    }
    const bool auth_clean = d.count() == errors_before_auth;

    auto limits = root.sub_table("limits");
    if (d.ok(limits) && *limits != nullptr) {
        parse_limits_section(TableReader(path, **limits, "limits", kSchema), cfg.limits, d);
    }

    auto outbound = root.sub_table("outbound");
    if (d.ok(outbound) && *outbound != nullptr) {
        parse_outbound_section(TableReader(path, **outbound, "outbound", kSchema), cfg, d);
    }

    // Whole-file requirements only where their inputs were valid, so a typo
    // is reported where it is rather than also as the requirement it broke.
    if (auth_clean && !d.meant("auth")) {
        const bool have_auth = auth && *auth != nullptr;
        const toml::table empty;
        d.ok(check_auth_modes(TableReader(path, have_auth ? **auth : empty, "auth"), cfg.auth));
    }
    return cfg;
}

}  // namespace

Result<RelayConfig> parse_relay_config(std::string_view text, const std::string& path) {
    Diagnostics d;
    RelayConfig cfg = parse_relay(text, path, d);
    if (!d.empty()) {
        return Unexpected(d.first());
    }
    return cfg;
}

Result<RelayConfig> load_relay_config(const std::string& path) {
    auto text = detail::read_config_file(path);
    SP_CONFIG_TRY(text);
    return parse_relay_config(*text, path);
}

std::vector<Error> relay_config_errors(std::string_view text, const std::string& path) {
    Diagnostics d;
    (void)parse_relay(text, path, d);
    return d.sorted();
}

std::vector<Error> check_relay_config(const std::string& path) {
    auto text = detail::read_config_file(path);
    if (!text) {
        return {text.error()};
    }
    Diagnostics d;
    const RelayConfig cfg = parse_relay(*text, path, d);
    std::vector<Error> out = d.sorted();
    // Then the files it names, as a start would read them. Files named by a
    // key that had an error are empty here, so they are not reported twice.
    if (!cfg.auth.keys.empty()) {
        for (auto& e : check_key_file(cfg.auth.keys, false)) {
            out.push_back(std::move(e));
        }
    }
    for (const auto* f : {&cfg.auth.certificate, &cfg.auth.private_key, &cfg.auth.agent_ca}) {
        if (!f->empty()) {
            if (auto r = check_readable(*f); !r) {
                out.push_back(r.error());
            }
        }
    }
    return out;
}

bool listen_allowed(const RelayConfig& cfg, const HostPorts& want) {
    if (!want.ip) {
        return false;
    }
    const IpAddress ip = want.ip->unmapped();
    for (const auto& allow : cfg.relay.allow_listen) {
        if (!allow.ip || !allow.ports.contains(want.ports)) {
            continue;
        }
        const IpAddress a = allow.ip->unmapped();
        if (a == ip || (a.is_unspecified() && a.family() == ip.family())) {
            return true;
        }
    }
    return false;
}

bool outbound_allowed(const RelayConfig& cfg, std::string_view host, const IpAddress& ip,
                      uint16_t port) {
    const auto iequal = [](std::string_view a, std::string_view b) {
        return a.size() == b.size() &&
               std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
                   return std::tolower(static_cast<unsigned char>(x)) ==
                          std::tolower(static_cast<unsigned char>(y));
               });
    };
    for (const auto& rule : cfg.outbound_allow) {
        if (!rule.ports.contains(port)) {
            continue;
        }
        if (rule.cidr ? rule.cidr->contains(ip) : (!host.empty() && iequal(rule.host, host))) {
            return true;
        }
    }
    return false;
}

}  // namespace sp::config
