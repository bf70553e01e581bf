// SPDX-License-Identifier: Apache-2.0
#include "config/relay_config.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "config/metrics_listen.hpp"
#include "config/parse_util.hpp"
#include "config/toml_include.hpp"

namespace sp::config {

namespace {

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

constexpr std::array<std::string_view, 4> kRootKeys = {"relay", "auth", "limits", "outbound"};
constexpr std::array<std::string_view, 7> kRelayKeys = {
    "threads",       "data_path",      "control_listen", "allow_listen",
    "status_socket", "metrics_listen", "drain_timeout_s"};
constexpr std::array<std::string_view, 6> kAuthKeys = {"keys",     "certificate",  "private_key",
                                                       "agent_ca", "allow_agents", "deny_agents"};
constexpr std::array<std::string_view, 6> kLimitsKeys = {
    "max_sessions",       "max_sessions_per_client", "max_new_sessions_per_client_per_s",
    "pending_timeout_ms", "handshake_timeout_ms",    "idle_timeout_s"};
constexpr std::array<std::string_view, 1> kOutboundKeys = {"allow"};
constexpr std::array<detail::SchemaTable, 4> kSchema = {{
    {"relay", kRelayKeys},
    {"auth", kAuthKeys},
    {"limits", kLimitsKeys},
    {"outbound", kOutboundKeys},
}};

Result<void> parse_relay_section(const TableReader& r, RelaySection& s) {
    SP_CONFIG_TRY(r.check_keys(kRelayKeys));
    SP_CONFIG_TRY(r.read_uint("threads", 0, kMaxThreads, s.threads));
    SP_CONFIG_TRY(detail::read_data_path(r, s.data_path));
    SP_CONFIG_TRY(r.read_uint("drain_timeout_s", 0, kMaxDrainS, s.drain_timeout_s));

    auto sock = r.string_item("status_socket");
    SP_CONFIG_TRY(sock);
    if (*sock) {
        SP_CONFIG_TRY(detail::check_socket_path(r, **sock, "status_socket"));
        s.status_socket = (*sock)->value;
    }
    SP_CONFIG_TRY(detail::read_metrics_listen(r, s.metrics_listen));

    auto control = r.strings("control_listen");
    SP_CONFIG_TRY(control);
    if (*control) {
        if ((*control)->empty()) {
            return r.error(detail::pos_of(*r.table().get("control_listen")), "control_listen",
                           "needs at least one address (omit the key for 0.0.0.0:44500)");
        }
        s.control_listen.clear();
        for (const auto& item : **control) {
            auto a = SocketAddress::parse(item.value);
            if (!a) {
                return detail::relocate(r, item, std::move(a.error()));
            }
            for (const auto& prev : s.control_listen) {
                if (prev == *a) {
                    return detail::config_error(r.file(), item.pos, item.key,
                                                fmt::format("{} is listed twice", a->to_string()));
                }
            }
            s.control_listen.push_back(*a);
        }
    }

    auto allow = r.strings("allow_listen");
    SP_CONFIG_TRY(allow);
    if (*allow) {
        // An empty list is accepted on purpose: agents may then open nothing,
        // a lock-down an admin may want during maintenance.
        s.allow_listen.clear();
        for (const auto& item : **allow) {
            auto hp = HostPorts::parse(item.value, true);
            if (!hp) {
                return detail::relocate(r, item, std::move(hp.error()));
            }
            if (!hp->ip) {
                return detail::config_error(
                    r.file(), item.pos, item.key,
                    fmt::format("\"{}\" is not a literal IP address (names are not allowed here)",
                                hp->host));
            }
            s.allow_listen.push_back(std::move(*hp));
        }
    }
    return {};
}

Result<void> parse_auth_section(const TableReader& r, AuthSection& a) {
    SP_CONFIG_TRY(r.check_keys(kAuthKeys));
    SP_CONFIG_TRY(r.read_path("keys", a.keys));
    SP_CONFIG_TRY(r.read_path("certificate", a.certificate));
    SP_CONFIG_TRY(r.read_path("private_key", a.private_key));
    SP_CONFIG_TRY(r.read_path("agent_ca", a.agent_ca));
    for (const auto& [k, out] :
         {std::pair{"allow_agents", &a.allow_agents}, std::pair{"deny_agents", &a.deny_agents}}) {
        auto items = r.strings(k);
        SP_CONFIG_TRY(items);
        if (*items) {
            auto cidrs = detail::parse_cidrs(r, **items);
            SP_CONFIG_TRY(cidrs);
            *out = std::move(*cidrs);
        }
    }
    return {};
}

// Certificate mode is all-or-none; at least one mode must be configured.
// Both at once is allowed: agents may use either while keys are migrated.
Result<void> check_auth_modes(const TableReader& r, const AuthSection& a) {
    const std::array<std::pair<std::string_view, const std::string*>, 3> cert = {{
        {"certificate", &a.certificate},
        {"private_key", &a.private_key},
        {"agent_ca", &a.agent_ca},
    }};
    int set = 0;
    for (const auto& c : cert) {
        set += c.second->empty() ? 0 : 1;
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
    if (a.keys.empty() && set == 0) {
        return r.missing({},
                         "no agent authentication: set auth.keys (shared-key mode) or "
                         "auth.certificate, auth.private_key and auth.agent_ca "
                         "(certificate mode)");
    }
    return {};
}

Result<void> parse_limits_section(const TableReader& r, LimitsSection& l) {
    SP_CONFIG_TRY(r.check_keys(kLimitsKeys));
    SP_CONFIG_TRY(r.read_uint("max_sessions", 1, kMaxSessions, l.max_sessions));
    SP_CONFIG_TRY(
        r.read_uint("max_sessions_per_client", 0, kMaxSessions, l.max_sessions_per_client));
    SP_CONFIG_TRY(r.read_uint("max_new_sessions_per_client_per_s", 0, kMaxRate,
                              l.max_new_sessions_per_client_per_s));
    SP_CONFIG_TRY(r.read_uint("pending_timeout_ms", 1, kMaxTimeoutMs, l.pending_timeout_ms));
    SP_CONFIG_TRY(r.read_uint("handshake_timeout_ms", 1, kMaxTimeoutMs, l.handshake_timeout_ms));
    SP_CONFIG_TRY(r.read_uint("idle_timeout_s", 0, kMaxIdleS, l.idle_timeout_s));
    return {};
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

Result<void> parse_outbound_section(const TableReader& r, std::vector<OutboundRule>& ret_rules) {
    SP_CONFIG_TRY(r.check_keys(kOutboundKeys));
    auto items = r.strings("allow");
    SP_CONFIG_TRY(items);
    if (!*items) {
        return {};
    }
    for (const auto& item : **items) {
        auto rule = parse_outbound_rule(item.value);
        if (!rule) {
            return detail::relocate(r, item, std::move(rule.error()));
        }
        ret_rules.push_back(std::move(*rule));
    }
    return {};
}

}  // namespace

Result<RelayConfig> parse_relay_config(std::string_view text, const std::string& path) {
    auto doc = detail::parse_document(text, path);
    SP_CONFIG_TRY(doc);

    RelayConfig cfg;
    cfg.path = path;
    cfg.relay.control_listen = {SocketAddress(IpAddress::v4(0), 44500)};
    cfg.relay.allow_listen = {HostPorts{"0.0.0.0", IpAddress::v4(0), PortRange{1, 65535}}};

    const TableReader root(path, *doc, "", kSchema);
    SP_CONFIG_TRY(root.check_keys(kRootKeys));

    auto relay = root.sub_table("relay");
    SP_CONFIG_TRY(relay);
    if (*relay != nullptr) {
        SP_CONFIG_TRY(parse_relay_section(TableReader(path, **relay, "relay", kSchema), cfg.relay));
    }

    auto auth = root.sub_table("auth");
    SP_CONFIG_TRY(auth);
    if (*auth != nullptr) {
        SP_CONFIG_TRY(parse_auth_section(TableReader(path, **auth, "auth", kSchema), cfg.auth));
    }

    auto limits = root.sub_table("limits");
    SP_CONFIG_TRY(limits);
    if (*limits != nullptr) {
        SP_CONFIG_TRY(
            parse_limits_section(TableReader(path, **limits, "limits", kSchema), cfg.limits));
    }

    auto outbound = root.sub_table("outbound");
    SP_CONFIG_TRY(outbound);
    if (*outbound != nullptr) {
        SP_CONFIG_TRY(parse_outbound_section(TableReader(path, **outbound, "outbound", kSchema),
                                             cfg.outbound_allow));
    }

    // Whole-file requirements come after every per-key check, so a typo is
    // reported where it is rather than as the requirement it broke.
    SP_CONFIG_TRY(
        check_auth_modes(TableReader(path, *auth != nullptr ? **auth : *doc, "auth"), cfg.auth));
    return cfg;
}

Result<RelayConfig> load_relay_config(const std::string& path) {
    auto text = detail::read_config_file(path);
    SP_CONFIG_TRY(text);
    return parse_relay_config(*text, path);
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
