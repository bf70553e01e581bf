// SPDX-License-Identifier: Apache-2.0
#include "config/agent_config.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "config/metrics_listen.hpp"
#include "config/parse_util.hpp"
#include "config/toml_include.hpp"

namespace sp::config {

namespace {

using detail::Pos;
using detail::StringItem;
using detail::TableReader;

// Range choices (SPEC leaves them open):
// - pool: 1024 idle channels per relay is far more than any burst needs and
//   bounds the fds an agent opens on each relay at startup.
// - threads: as on the relay.
// - service max_sessions: as the relay's limit, 0 = unlimited.
// - affinity_s: at most 30 days; 0 = off.
constexpr uint32_t kMaxPool = 1024;
constexpr uint32_t kMaxThreads = 1024;
constexpr uint32_t kMaxSessions = 10'000'000;
constexpr uint32_t kMaxAffinityS = 2'592'000;

constexpr std::array<std::string_view, 4> kRootKeys = {"agent", "relay", "service", "outbound"};
constexpr std::array<std::string_view, 6> kAgentKeys = {"name", "status_socket", "metrics_listen",
                                                        "pool", "threads",       "data_path"};
constexpr std::array<std::string_view, 6> kRelayKeys = {"address",     "key",      "certificate",
                                                        "private_key", "relay_ca", "standby"};
constexpr std::array<std::string_view, 8> kServiceKeys = {
    "name",          "listen",       "backend",      "proxy_protocol",
    "allow_clients", "deny_clients", "max_sessions", "affinity_s"};
constexpr std::array<std::string_view, 1> kOutboundKeys = {"socks5_listen"};
constexpr std::array<detail::SchemaTable, 4> kSchema = {{
    {"agent", kAgentKeys},
    {"relay", kRelayKeys, true},
    {"service", kServiceKeys, true},
    {"outbound", kOutboundKeys},
}};

/// A parsed address with where it came from, for cross-field messages.
struct Located {
    HostPorts hp;
    StringItem item;
    size_t service = 0;
};

Result<void> parse_agent_section(const TableReader& r, AgentSection& a) {
    SP_CONFIG_TRY(r.check_keys(kAgentKeys));
    auto name = r.string_item("name");
    SP_CONFIG_TRY(name);
    if (!*name) {
        return r.missing("name", "is required (a name for this agent in relay logs)");
    }
    if (!detail::valid_name((*name)->value)) {
        return r.error((*name)->pos, "name",
                       "must be 1-64 characters of letters, digits, '-', '_' or '.'");
    }
    a.name = (*name)->value;

    auto sock = r.string_item("status_socket");
    SP_CONFIG_TRY(sock);
    if (*sock) {
        SP_CONFIG_TRY(detail::check_socket_path(r, **sock, "status_socket"));
        a.status_socket = (*sock)->value;
    }
    SP_CONFIG_TRY(detail::read_metrics_listen(r, a.metrics_listen));
    SP_CONFIG_TRY(r.read_uint("pool", 0, kMaxPool, a.pool));
    SP_CONFIG_TRY(r.read_uint("threads", 0, kMaxThreads, a.threads));
    SP_CONFIG_TRY(detail::read_data_path(r, a.data_path));
    return {};
}

Result<void> parse_relay_entry(const TableReader& r, RelayEntry& e) {
    SP_CONFIG_TRY(r.check_keys(kRelayKeys));
    auto address = r.string_item("address");
    SP_CONFIG_TRY(address);
    if (!*address) {
        return r.missing("address", "is required (HOST:PORT of the relay's control_listen)");
    }
    auto hp = HostPorts::parse((*address)->value, false);
    if (!hp) {
        return detail::relocate(r, **address, std::move(hp.error()));
    }
    e.address = std::move(*hp);
    SP_CONFIG_TRY(r.read_path("key", e.key));
    SP_CONFIG_TRY(r.read_path("certificate", e.certificate));
    SP_CONFIG_TRY(r.read_path("private_key", e.private_key));
    SP_CONFIG_TRY(r.read_path("relay_ca", e.relay_ca));
    SP_CONFIG_TRY(r.read_bool("standby", e.standby));

    // Exactly one mode per relay: an agent must know which handshake to
    // offer, and a half-filled certificate block is always a mistake.
    const std::array<std::pair<std::string_view, const std::string*>, 3> cert = {{
        {"certificate", &e.certificate},
        {"private_key", &e.private_key},
        {"relay_ca", &e.relay_ca},
    }};
    int set = 0;
    for (const auto& c : cert) {
        set += c.second->empty() ? 0 : 1;
    }
    if (!e.key.empty() && set != 0) {
        const toml::node* n = r.table().get("key");
        return r.error(detail::pos_of(*n), "key",
                       "choose one mode per relay: key (shared key) or certificate, "
                       "private_key and relay_ca (certificate mode), not both");
    }
    if (set != 0 && set != 3) {
        for (const auto& c : cert) {
            if (c.second->empty()) {
                return r.missing(c.first,
                                 fmt::format("certificate mode needs certificate, private_key "
                                             "and relay_ca together; {} is not set",
                                             c.first));
            }
        }
    }
    if (e.key.empty() && set == 0) {
        return r.missing({},
                         "no authentication: set key (shared-key mode) or certificate, "
                         "private_key and relay_ca (certificate mode)");
    }
    return {};
}

Result<std::vector<Located>> parse_address_list(const TableReader& r, std::string_view k,
                                                bool literal_only, std::string_view what) {
    auto items = r.strings(k);
    SP_CONFIG_TRY(items);
    if (!*items) {
        return r.missing(k, fmt::format("is required ({})", what));
    }
    if ((*items)->empty()) {
        return r.error(detail::pos_of(*r.table().get(k)), k,
                       fmt::format("needs at least one address ({})", what));
    }
    std::vector<Located> out;
    for (auto& item : **items) {
        auto hp = HostPorts::parse(item.value, true);
        if (!hp) {
            return detail::relocate(r, item, std::move(hp.error()));
        }
        if (literal_only && !hp->ip) {
            return detail::config_error(
                r.file(), item.pos, item.key,
                fmt::format("\"{}\" is not a literal IP address (the relay binds it; use "
                            "0.0.0.0 or [::] for every address)",
                            hp->host));
        }
        out.push_back(Located{std::move(*hp), std::move(item), 0});
    }
    return out;
}

Result<void> parse_service(const TableReader& r, Service& s, std::vector<Located>& ret_listens,
                           size_t index) {
    SP_CONFIG_TRY(r.check_keys(kServiceKeys));
    auto name = r.string_item("name");
    SP_CONFIG_TRY(name);
    if (!*name) {
        return r.missing("name", "is required (used in events and by the relay)");
    }
    if (!detail::valid_name((*name)->value)) {
        return r.error((*name)->pos, "name",
                       "must be 1-64 characters of letters, digits, '-', '_' or '.'");
    }
    s.name = (*name)->value;

    auto listen = parse_address_list(r, "listen", true, "where the relay listens");
    SP_CONFIG_TRY(listen);
    auto backend = parse_address_list(r, "backend", false, "where the agent connects");
    SP_CONFIG_TRY(backend);

    // SPEC: both sides of a mapping have the same length. A range listen may
    // fold onto one backend port (many public ports, one server port), but a
    // single listen port cannot fan out to a backend range: which port would
    // a client get?
    for (const auto& b : *backend) {
        if (b.hp.ports.size() == 1) {
            continue;
        }
        for (const auto& l : *listen) {
            if (l.hp.ports.size() != b.hp.ports.size()) {
                return detail::config_error(
                    r.file(), b.item.pos, b.item.key,
                    fmt::format("backend range {} has {} ports but listen {} has {} (a backend "
                                "range needs a listen range of the same length)",
                                b.hp.to_string(), b.hp.ports.size(), l.hp.to_string(),
                                l.hp.ports.size()));
            }
        }
    }
    for (auto& l : *listen) {
        l.service = index;
        s.listen.push_back(l.hp);
        ret_listens.push_back(std::move(l));
    }
    for (auto& b : *backend) {
        s.backend.push_back(std::move(b.hp));
    }

    auto proxy = r.string_item("proxy_protocol");
    SP_CONFIG_TRY(proxy);
    if (*proxy) {
        const std::string& v = (*proxy)->value;
        if (v == "none") {
            s.proxy_protocol = ProxyProtocol::None;
        } else if (v == "v1") {
            s.proxy_protocol = ProxyProtocol::V1;
        } else if (v == "v2") {
            s.proxy_protocol = ProxyProtocol::V2;
        } else {
            return detail::bad_enum(r, **proxy, "proxy_protocol", "\"none\", \"v1\" or \"v2\"");
        }
    }
    for (const auto& [k, out] : {std::pair{"allow_clients", &s.allow_clients},
                                 std::pair{"deny_clients", &s.deny_clients}}) {
        auto items = r.strings(k);
        SP_CONFIG_TRY(items);
        if (*items) {
            auto cidrs = detail::parse_cidrs(r, **items);
            SP_CONFIG_TRY(cidrs);
            *out = std::move(*cidrs);
        }
    }
    SP_CONFIG_TRY(r.read_uint("max_sessions", 0, kMaxSessions, s.max_sessions));
    SP_CONFIG_TRY(r.read_uint("affinity_s", 0, kMaxAffinityS, s.affinity_s));
    return {};
}

// Two listeners collide when the kernel would refuse the second bind: same
// family, same address or either one the wildcard, and a shared port.
// Different families never collide here: the relay binds [::] with
// IPV6_V6ONLY, so 0.0.0.0:22 and [::]:22 coexist.
bool listens_overlap(const HostPorts& a, const HostPorts& b) {
    if (!a.ports.overlaps(b.ports)) {
        return false;
    }
    const IpAddress x = a.ip->unmapped();
    const IpAddress y = b.ip->unmapped();
    if (x.family() != y.family()) {
        return false;
    }
    return x == y || x.is_unspecified() || y.is_unspecified();
}

std::string lowercase(std::string_view s) {
    std::string out(s);
    for (auto& c : out) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

}  // namespace

Result<AgentConfig> parse_agent_config(std::string_view text, const std::string& path) {
    auto doc = detail::parse_document(text, path);
    SP_CONFIG_TRY(doc);

    AgentConfig cfg;
    cfg.path = path;
    const TableReader root(path, *doc, "", kSchema);
    SP_CONFIG_TRY(root.check_keys(kRootKeys));

    auto agent = root.sub_table("agent");
    SP_CONFIG_TRY(agent);
    if (*agent == nullptr) {
        return root.missing("agent.name", "is required: add an [agent] table with name = \"...\"");
    }
    SP_CONFIG_TRY(parse_agent_section(TableReader(path, **agent, "agent", kSchema), cfg.agent));

    auto relays = root.table_array("relay");
    SP_CONFIG_TRY(relays);
    std::vector<Pos> relay_pos;
    for (size_t i = 0; *relays != nullptr && i < (*relays)->size(); ++i) {
        const auto& t = *(*relays)->get(i)->as_table();
        const TableReader r(path, t, detail::index_key("relay", i), kSchema);
        RelayEntry e;
        SP_CONFIG_TRY(parse_relay_entry(r, e));
        for (size_t j = 0; j < cfg.relays.size(); ++j) {
            const auto& prev = cfg.relays[j].address;
            const bool same_host = (prev.ip && e.address.ip)
                                       ? *prev.ip == *e.address.ip
                                       : lowercase(prev.host) == lowercase(e.address.host);
            if (same_host && prev.ports == e.address.ports) {
                const toml::node* n = t.get("address");
                return r.error(detail::pos_of(*n), "address",
                               fmt::format("relay {} is already listed at line {}",
                                           e.address.to_string(), relay_pos[j].line));
            }
        }
        relay_pos.push_back(r.pos());
        cfg.relays.push_back(std::move(e));
    }

    auto services = root.table_array("service");
    SP_CONFIG_TRY(services);
    std::vector<Located> listens;
    if (*services != nullptr) {
        for (size_t i = 0; i < (*services)->size(); ++i) {
            const auto& t = *(*services)->get(i)->as_table();
            const TableReader r(path, t, detail::index_key("service", i), kSchema);
            Service s;
            SP_CONFIG_TRY(parse_service(r, s, listens, i));
            for (size_t j = 0; j < cfg.services.size(); ++j) {
                if (cfg.services[j].name == s.name) {
                    return r.error(
                        detail::pos_of(*t.get("name")), "name",
                        fmt::format("service \"{}\" is already defined as service[{}]", s.name, j));
                }
            }
            cfg.services.push_back(std::move(s));
        }
    }
    // Whole-file requirements come after every per-key check, so a typo is
    // reported where it is rather than as the requirement it broke.
    if (cfg.relays.empty()) {
        return root.missing("relay", "at least one [[relay]] block is required");
    }
    // Quadratic, but a config has tens of listeners, not thousands.
    for (size_t i = 0; i < listens.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (listens_overlap(listens[i].hp, listens[j].hp)) {
                const auto& a = listens[i];
                const auto& b = listens[j];
                return detail::config_error(
                    path, a.item.pos, a.item.key,
                    fmt::format("{} overlaps {} of service \"{}\" ({}, line {})", a.hp.to_string(),
                                b.item.key, cfg.services[b.service].name, b.hp.to_string(),
                                b.item.pos.line));
            }
        }
    }

    auto outbound = root.sub_table("outbound");
    SP_CONFIG_TRY(outbound);
    if (*outbound != nullptr) {
        const TableReader r(path, **outbound, "outbound", kSchema);
        SP_CONFIG_TRY(r.check_keys(kOutboundKeys));
        auto socks = r.string_item("socks5_listen");
        SP_CONFIG_TRY(socks);
        if (*socks && !(*socks)->value.empty()) {
            auto a = SocketAddress::parse((*socks)->value);
            if (!a) {
                return detail::relocate(r, **socks, std::move(a.error()));
            }
            cfg.socks5_listen = (*socks)->value;
        }
    }
    return cfg;
}

Result<AgentConfig> load_agent_config(const std::string& path) {
    auto text = detail::read_config_file(path);
    SP_CONFIG_TRY(text);
    return parse_agent_config(*text, path);
}

}  // namespace sp::config
