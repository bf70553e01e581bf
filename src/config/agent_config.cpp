// SPDX-License-Identifier: Apache-2.0
#include "config/agent_config.hpp"

#include <string.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <utility>

#include "base/wire_limits.hpp"
#include "config/keys.hpp"
#include "config/metrics_listen.hpp"
#include "config/parse_util.hpp"
#include "config/toml_include.hpp"

namespace sp::config {

namespace {

using detail::Diagnostics;
using detail::Pos;
using detail::StringItem;
using detail::TableReader;

// Range choices (SPEC leaves them open):
// - pool: 1024 idle channels per relay is far more than any burst needs and
//   bounds the fds an agent opens on each relay at startup.
// - threads: as on the relay.
// - service max_sessions: as the relay's limit, 0 = unlimited.
// - affinity_s: at most 30 days; 0 = off.
// - health_check_interval_ms: 0 = off, else 100 ms (a check per backend and tenth
//   of a second is plenty) to one hour; the timeout must end before the next
//   check starts; rise/fall up to 100 checks.
constexpr uint32_t kMaxPool = 1024;
// What the control protocol carries bounds what a file may say
// (base/wire_limits.hpp): names are valid_name()s of at most 64 bytes, well
// within a wire name; HELLO's pool_size is a u16.
static_assert(64 <= wire::kMaxName);
static_assert(kMaxPool <= UINT16_MAX);
constexpr uint32_t kMaxThreads = 1024;
constexpr uint32_t kMaxSessions = 10'000'000;
constexpr uint32_t kMaxAffinityS = 2'592'000;
constexpr uint32_t kMinCheckIntervalMs = 100;
constexpr uint32_t kMaxCheckIntervalMs = 3'600'000;
constexpr uint32_t kMinCheckTimeoutMs = 10;
constexpr uint32_t kMaxCheckCount = 100;

constexpr std::array<std::string_view, 4> kRootKeys = {"agent", "relay", "service", "outbound"};
constexpr std::array<std::string_view, 6> kAgentKeys = {"name", "status_socket", "metrics_listen",
                                                        "pool", "threads",       "data_path"};
constexpr std::array<std::string_view, 6> kRelayKeys = {"address",     "key",      "certificate",
                                                        "private_key", "relay_ca", "standby"};
constexpr std::array<std::string_view, 13> kServiceKeys = {"name",
                                                           "listen",
                                                           "backend",
                                                           "proxy_protocol",
                                                           "allow_clients",
                                                           "deny_clients",
                                                           "max_sessions",
                                                           "affinity_s",
                                                           "affinity_group",
                                                           "health_check_interval_ms",
                                                           "health_check_timeout_ms",
                                                           "health_check_rise",
                                                           "health_check_fall"};
constexpr std::array<std::string_view, 5> kOutboundKeys = {
    "socks5_listen", "http_proxy_listen", "users", "allow_clients", "deny_clients"};
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

void parse_agent_section(const TableReader& r, AgentSection& a, Diagnostics& d) {
    r.check_keys(kAgentKeys, d);
    if (auto name = r.string_item("name"); d.ok(name)) {
        if (!*name) {
            if (!d.meant("agent.name")) {
                d.add(r.missing("name", "is required (a name for this agent in relay logs)"));
            }
        } else if (!detail::valid_name((*name)->value)) {
            d.add(r.error((*name)->pos, "name",
                          "must be 1-64 characters of letters, digits, '-', '_' or '.'"));
        } else {
            a.name = (*name)->value;
        }
    }
    if (auto sock = r.string_item("status_socket"); d.ok(sock) && *sock) {
        if (d.ok(detail::check_socket_path(r, **sock, "status_socket"))) {
            a.status_socket = (*sock)->value;
        }
    }
    d.ok(detail::read_metrics_listen(r, a.metrics_listen));
    d.ok(r.read_uint("pool", 0, kMaxPool, a.pool));
    d.ok(r.read_uint("threads", 0, kMaxThreads, a.threads));
    d.ok(detail::read_data_path(r, a.data_path));
}

/// One [[relay]] block. False when it had an error (it is then left out).
bool parse_relay_entry(const TableReader& r, RelayEntry& e, Diagnostics& d) {
    const size_t errors_before = d.count();
    r.check_keys(kRelayKeys, d);
    if (auto address = r.string_item("address"); d.ok(address)) {
        if (!*address) {
            if (!d.meant(r.key("address"))) {
                d.add(
                    r.missing("address", "is required (HOST:PORT of the relay's control_listen)"));
            }
        } else if (auto hp = HostPorts::parse((*address)->value, false); !hp) {
            d.add(detail::relocate(r, **address, std::move(hp.error())));
        } else {
            e.address = std::move(*hp);
        }
    }
    d.ok(r.read_path("key", e.key));
    d.ok(r.read_path("certificate", e.certificate));
    d.ok(r.read_path("private_key", e.private_key));
    d.ok(r.read_path("relay_ca", e.relay_ca));
    d.ok(r.read_bool("standby", e.standby));
    if (d.count() != errors_before) {
        return false;  // the mode rules below would only repeat a bad key's error
    }

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
        d.add(r.error(detail::pos_of(*n), "key",
                      "choose one mode per relay: key (shared key) or certificate, "
                      "private_key and relay_ca (certificate mode), not both"));
        return false;
    }
    if (set != 0 && set != 3) {
        for (const auto& c : cert) {
            if (c.second->empty()) {
                d.add(r.missing(c.first,
                                fmt::format("certificate mode needs certificate, private_key "
                                            "and relay_ca together; {} is not set",
                                            c.first)));
                return false;
            }
        }
    }
    if (e.key.empty() && set == 0) {
        d.add(r.missing({},
                        "no authentication: set key (shared-key mode) or certificate, "
                        "private_key and relay_ca (certificate mode)"));
        return false;
    }
    return true;
}

/// The valid addresses of a listen or backend list; an error for each
/// invalid one, and one when the list is missing or empty.
std::vector<Located> parse_address_list(const TableReader& r, std::string_view k, bool literal_only,
                                        std::string_view what, Diagnostics& d) {
    std::vector<Located> out;
    auto items = r.strings(k);
    if (!d.ok(items)) {
        return out;
    }
    if (!*items) {
        if (!d.meant(r.key(k))) {
            d.add(r.missing(k, fmt::format("is required ({})", what)));
        }
        return out;
    }
    if ((*items)->empty()) {
        d.add(r.error(detail::pos_of(*r.table().get(k)), k,
                      fmt::format("needs at least one address ({})", what)));
        return out;
    }
    for (auto& item : **items) {
        auto hp = HostPorts::parse(item.value, true);
        if (!hp) {
            d.add(detail::relocate(r, item, std::move(hp.error())));
            continue;
        }
        if (literal_only && !hp->ip) {
            d.add(detail::config_error(
                r.file(), item.pos, item.key,
                fmt::format("\"{}\" is not a literal IP address (the relay binds it; use "
                            "0.0.0.0 or [::] for every address)",
                            hp->host)));
            continue;
        }
        out.push_back(Located{std::move(*hp), std::move(item), 0});
    }
    return out;
}

/// The list `k` of this table has at most `max` items, the bound of its
/// list on the wire.
void check_wire_list(const TableReader& r, std::string_view k, size_t max, std::string_view what,
                     Diagnostics& d) {
    const toml::node* n = r.table().get(k);
    const toml::array* arr = n != nullptr ? n->as_array() : nullptr;
    if (arr != nullptr && arr->size() > max) {
        d.add(r.error(detail::pos_of(*n), k,
                      fmt::format("{} entries, but the control protocol carries at most {} {}",
                                  arr->size(), max, what)));
    }
}

/// `wire_text` (what the agent sends for `item`) fits a wire address string.
void check_wire_string(const TableReader& r, const StringItem& item, const std::string& wire_text,
                       Diagnostics& d) {
    if (wire_text.size() > wire::kMaxAddress) {
        d.add(detail::config_error(
            r.file(), item.pos, item.key,
            fmt::format("\"{}...\" is {} bytes on the control protocol, which carries at most {}",
                        wire_text.substr(0, 32), wire_text.size(), wire::kMaxAddress)));
    }
}

// The health check keys (agent only: the relay never sees them).
void parse_checks(const TableReader& r, Service& s, Diagnostics& d) {
    const auto at = [&r](std::string_view k) { return detail::pos_of(*r.table().get(k)); };
    if (d.ok(r.read_uint("health_check_interval_ms", 0, kMaxCheckIntervalMs,
                         s.health_check_interval_ms)) &&
        s.health_check_interval_ms != 0 && s.health_check_interval_ms < kMinCheckIntervalMs) {
        d.add(r.error(
            at("health_check_interval_ms"), "health_check_interval_ms",
            fmt::format("{} is out of range (0 to turn checks off, or {}-{})",
                        s.health_check_interval_ms, kMinCheckIntervalMs, kMaxCheckIntervalMs)));
        s.health_check_interval_ms = 0;
    }
    // Unset, the timeout is 1 s or half the interval, whichever is shorter,
    // so a short interval alone is a valid setting.
    if (r.table().get("health_check_timeout_ms") == nullptr) {
        s.health_check_timeout_ms = std::min<uint32_t>(
            s.health_check_timeout_ms, std::max<uint32_t>(1, s.health_check_interval_ms / 2));
    } else if (d.ok(r.read_uint("health_check_timeout_ms", kMinCheckTimeoutMs, kMaxCheckIntervalMs,
                                s.health_check_timeout_ms)) &&
               s.health_check_interval_ms != 0 &&
               s.health_check_timeout_ms >= s.health_check_interval_ms) {
        d.add(r.error(
            at("health_check_timeout_ms"), "health_check_timeout_ms",
            fmt::format("{} is not less than health_check_interval_ms ({}): a check must end "
                        "before the next one starts",
                        s.health_check_timeout_ms, s.health_check_interval_ms)));
    }
    d.ok(r.read_uint("health_check_rise", 1, kMaxCheckCount, s.health_check_rise));
    d.ok(r.read_uint("health_check_fall", 1, kMaxCheckCount, s.health_check_fall));
}

void parse_service(const TableReader& r, Service& s, std::vector<Located>& ret_listens,
                   size_t index, Diagnostics& d) {
    r.check_keys(kServiceKeys, d);
    if (auto name = r.string_item("name"); d.ok(name)) {
        if (!*name) {
            if (!d.meant(r.key("name"))) {
                d.add(r.missing("name", "is required (used in events and by the relay)"));
            }
        } else if (!detail::valid_name((*name)->value)) {
            d.add(r.error((*name)->pos, "name",
                          "must be 1-64 characters of letters, digits, '-', '_' or '.'"));
        } else {
            s.name = (*name)->value;
        }
    }

    auto listen = parse_address_list(r, "listen", true, "where the relay listens", d);
    auto backend = parse_address_list(r, "backend", false, "where the agent connects", d);
    check_wire_list(r, "listen", wire::kMaxListenPerService, "listen addresses in one service", d);
    for (const auto& l : listen) {
        check_wire_string(r, l.item, l.hp.to_string(), d);
    }
    // BACKEND_FAILED names the backend tried, "HOST:PORT", for the relay's
    // backend-failed event: a 253-byte host name and a port do not fit.
    for (const auto& b : backend) {
        HostPorts last = b.hp;
        last.ports.first = last.ports.last;
        check_wire_string(r, b.item, last.to_string(), d);
    }

    // SPEC: both sides of a mapping have the same length. A range listen may
    // fold onto one backend port (many public ports, one server port), but a
    // single listen port cannot fan out to a backend range: which port would
    // a client get?
    for (const auto& b : backend) {
        if (b.hp.ports.size() == 1) {
            continue;
        }
        for (const auto& l : listen) {
            if (l.hp.ports.size() != b.hp.ports.size()) {
                d.add(detail::config_error(
                    r.file(), b.item.pos, b.item.key,
                    fmt::format("backend range {} has {} ports but listen {} has {} (a backend "
                                "range needs a listen range of the same length)",
                                b.hp.to_string(), b.hp.ports.size(), l.hp.to_string(),
                                l.hp.ports.size())));
                break;
            }
        }
    }
    for (auto& l : listen) {
        l.service = index;
        s.listen.push_back(l.hp);
        ret_listens.push_back(std::move(l));
    }
    for (auto& b : backend) {
        s.backend.push_back(std::move(b.hp));
    }

    if (auto proxy = r.string_item("proxy_protocol"); d.ok(proxy) && *proxy) {
        const std::string& v = (*proxy)->value;
        if (v == "none") {
            s.proxy_protocol = ProxyProtocol::None;
        } else if (v == "v1") {
            s.proxy_protocol = ProxyProtocol::V1;
        } else if (v == "v2") {
            s.proxy_protocol = ProxyProtocol::V2;
        } else {
            d.add(detail::bad_enum(r, **proxy, "proxy_protocol", "\"none\", \"v1\" or \"v2\""));
        }
    }
    for (const auto& [k, out] : {std::pair{"allow_clients", &s.allow_clients},
                                 std::pair{"deny_clients", &s.deny_clients}}) {
        if (auto items = r.strings(k); d.ok(items) && *items) {
            *out = detail::parse_cidrs(r, **items, d);
            check_wire_list(r, k, wire::kMaxCidrsPerList, "CIDRs in one list", d);
        }
    }
    d.ok(r.read_uint("max_sessions", 0, kMaxSessions, s.max_sessions));
    d.ok(r.read_uint("affinity_s", 0, kMaxAffinityS, s.affinity_s));
    // "" is the default group, as SPEC 3 writes it.
    if (auto group = r.string_item("affinity_group");
        d.ok(group) && *group && !(*group)->value.empty()) {
        if (!detail::valid_name((*group)->value)) {
            d.add(r.error((*group)->pos, "affinity_group",
                          "must be 1-64 characters of letters, digits, '-', '_' or '.'"));
        } else {
            s.affinity_group = (*group)->value;
        }
    }
    parse_checks(r, s, d);
}

/// Payload bytes of `s` in a CONFIG message (control-protocol.md 3.2): the
/// agent sends each listen entry and CIDR as its to_string().
size_t wire_service_size(const Service& s) {
    size_t n = wire::kServiceFixed + wire::string_size(s.name.size());
    for (const auto& l : s.listen) {
        n += wire::string_size(l.to_string().size());
    }
    for (const auto* list : {&s.allow_clients, &s.deny_clients}) {
        for (const auto& c : *list) {
            n += wire::string_size(c.to_string().size());
        }
    }
    return n;
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

/// Every check of agent.toml; errors go to `d`, and the values that passed
/// their own checks into the result.
AgentConfig parse_agent(std::string_view text, const std::string& path, Diagnostics& d) {
    AgentConfig cfg;
    cfg.path = path;
    auto doc = detail::parse_document(text, path);
    if (!d.ok(doc)) {
        return cfg;  // toml++ stops at the first syntax error: nothing more to check
    }
    const TableReader root(path, *doc, "", kSchema);
    root.check_keys(kRootKeys, d);

    if (auto agent = root.sub_table("agent"); d.ok(agent)) {
        if (*agent == nullptr) {
            if (!d.meant("agent.name")) {
                d.add(root.missing("agent.name",
                                   "is required: add an [agent] table with name = \"...\""));
            }
        } else {
            parse_agent_section(TableReader(path, **agent, "agent", kSchema), cfg.agent, d);
        }
    }

    auto relays = root.table_array("relay");
    const bool relays_ok = d.ok(relays);
    std::vector<Pos> relay_pos;
    for (size_t i = 0; relays_ok && *relays != nullptr && i < (*relays)->size(); ++i) {
        const auto& t = *(*relays)->get(i)->as_table();
        const TableReader r(path, t, detail::index_key("relay", i), kSchema);
        RelayEntry e;
        if (!parse_relay_entry(r, e, d)) {
            continue;
        }
        bool duplicate = false;
        for (size_t j = 0; j < cfg.relays.size() && !duplicate; ++j) {
            const auto& prev = cfg.relays[j].address;
            const bool same_host = (prev.ip && e.address.ip)
                                       ? *prev.ip == *e.address.ip
                                       : lowercase(prev.host) == lowercase(e.address.host);
            if (same_host && prev.ports == e.address.ports) {
                const toml::node* n = t.get("address");
                d.add(r.error(detail::pos_of(*n), "address",
                              fmt::format("relay {} is already listed at line {}",
                                          e.address.to_string(), relay_pos[j].line)));
                duplicate = true;
            }
        }
        if (!duplicate) {
            relay_pos.push_back(r.pos());
            cfg.relays.push_back(std::move(e));
        }
    }

    std::vector<Located> listens;
    const toml::array* services_array = nullptr;
    if (auto services = root.table_array("service"); d.ok(services) && *services != nullptr) {
        services_array = *services;
        std::vector<std::pair<std::string, size_t>> names;  // valid names, first index
        for (size_t i = 0; i < (*services)->size(); ++i) {
            const auto& t = *(*services)->get(i)->as_table();
            const TableReader r(path, t, detail::index_key("service", i), kSchema);
            Service s;
            parse_service(r, s, listens, i, d);
            if (!s.name.empty()) {
                const auto prev = std::find_if(names.begin(), names.end(),
                                               [&](const auto& n) { return n.first == s.name; });
                if (prev != names.end()) {
                    d.add(r.error(detail::pos_of(*t.get("name")), "name",
                                  fmt::format("service \"{}\" is already defined as service[{}]",
                                              s.name, prev->second)));
                } else {
                    names.emplace_back(s.name, i);
                }
            }
            cfg.services.push_back(std::move(s));
        }
    }
    // What one CONFIG message must carry: each bound reported once, where it
    // is first broken.
    if (services_array != nullptr && services_array->size() > wire::kMaxServices) {
        const auto& t = *services_array->get(wire::kMaxServices)->as_table();
        d.add(detail::config_error(
            path, detail::pos_of(t), detail::index_key("service", wire::kMaxServices),
            fmt::format("{} services, but the control protocol carries at most {}",
                        services_array->size(), wire::kMaxServices)));
    }
    if (listens.size() > wire::kMaxListeners) {
        const auto& l = listens[wire::kMaxListeners];
        d.add(detail::config_error(
            path, l.item.pos, l.item.key,
            fmt::format("listen address {} of this file: the control protocol carries at most {} "
                        "over all services",
                        wire::kMaxListeners + 1, wire::kMaxListeners)));
    }
    size_t bytes = wire::kConfigFixed;
    for (size_t i = 0; i < cfg.services.size(); ++i) {
        bytes += wire_service_size(cfg.services[i]);
        if (bytes > wire::kMaxFrame) {
            const auto& t = *services_array->get(i)->as_table();
            d.add(detail::config_error(
                path, detail::pos_of(t), detail::index_key("service", i),
                fmt::format("the services up to this one make a CONFIG message of {} bytes, but "
                            "the control protocol carries at most {} (fewer client CIDRs or "
                            "services)",
                            bytes, wire::kMaxFrame)));
            break;
        }
    }

    // Whole-file requirements only where their inputs were valid, so a typo
    // is reported where it is rather than also as the requirement it broke.
    if (relays_ok && (*relays == nullptr || (*relays)->empty()) && !d.meant("relay")) {
        d.add(root.missing("relay", "at least one [[relay]] block is required"));
    }
    // Quadratic, but a config has tens of listeners, and never more than
    // the wire's 4096 (a file with more is refused above; skipping keeps a
    // hostile 4 MiB file from costing minutes).
    for (size_t i = 0; listens.size() <= wire::kMaxListeners && i < listens.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (listens_overlap(listens[i].hp, listens[j].hp)) {
                const auto& a = listens[i];
                const auto& b = listens[j];
                d.add(detail::config_error(
                    path, a.item.pos, a.item.key,
                    fmt::format("{} overlaps {} of service \"{}\" ({}, line {})", a.hp.to_string(),
                                b.item.key, cfg.services[b.service].name, b.hp.to_string(),
                                b.item.pos.line)));
                break;
            }
        }
    }

    if (auto outbound = root.sub_table("outbound"); d.ok(outbound) && *outbound != nullptr) {
        const TableReader r(path, **outbound, "outbound", kSchema);
        r.check_keys(kOutboundKeys, d);
        for (const auto& [k, out] :
             {std::pair{"socks5_listen", &cfg.outbound.socks5_listen},
              std::pair{"http_proxy_listen", &cfg.outbound.http_proxy_listen}}) {
            auto item = r.string_item(k);
            if (d.ok(item) && *item && !(*item)->value.empty()) {
                if (auto a = SocketAddress::parse((*item)->value); !a) {
                    d.add(detail::relocate(r, **item, std::move(a.error())));
                } else {
                    *out = (*item)->value;
                }
            }
        }
        d.ok(r.read_path("users", cfg.outbound.users));
        for (const auto& [k, out] : {std::pair{"allow_clients", &cfg.outbound.allow_clients},
                                     std::pair{"deny_clients", &cfg.outbound.deny_clients}}) {
            if (auto items = r.strings(k); d.ok(items) && *items) {
                *out = detail::parse_cidrs(r, **items, d);
            }
        }
        const auto& o = cfg.outbound;
        if (!o.socks5_listen.empty() && o.socks5_listen == o.http_proxy_listen) {
            d.add(r.error(detail::pos_of(*r.table().get("http_proxy_listen")), "http_proxy_listen",
                          fmt::format("{} is socks5_listen too: give each proxy its own port",
                                      o.http_proxy_listen)));
        }
    }
    return cfg;
}

}  // namespace

Result<AgentConfig> parse_agent_config(std::string_view text, const std::string& path) {
    Diagnostics d;
    AgentConfig cfg = parse_agent(text, path, d);
    if (!d.empty()) {
        return Unexpected(d.first());
    }
    return cfg;
}

size_t wire_config_size(const AgentConfig& cfg) {
    size_t n = wire::kConfigFixed;
    for (const auto& s : cfg.services) {
        n += wire_service_size(s);
    }
    return n;
}

Result<AgentConfig> load_agent_config(const std::string& path) {
    auto text = detail::read_config_file(path);
    SP_CONFIG_TRY(text);
    return parse_agent_config(*text, path);
}

std::vector<Error> agent_config_errors(std::string_view text, const std::string& path) {
    Diagnostics d;
    (void)parse_agent(text, path, d);
    return d.sorted();
}

std::vector<Error> check_agent_config(const std::string& path) {
    auto text = detail::read_config_file(path);
    if (!text) {
        return {text.error()};
    }
    Diagnostics d;
    const AgentConfig cfg = parse_agent(*text, path, d);
    std::vector<Error> out = d.sorted();
    // Then every relay's key or certificate files, as a start would read them.
    for (const auto& r : cfg.relays) {
        if (r.shared_key_mode()) {
            for (auto& e : check_key_file(r.key, true)) {
                out.push_back(std::move(e));
            }
        }
        for (const auto* f : {&r.certificate, &r.private_key, &r.relay_ca}) {
            if (!f->empty()) {
                if (auto c = check_readable(*f); !c) {
                    out.push_back(c.error());
                }
            }
        }
    }
    if (!cfg.outbound.users.empty()) {
        auto users = read_private_file(cfg.outbound.users, "users file");
        if (!users) {
            out.push_back(users.error());
        } else {
            std::string& secret = *users;
            ::explicit_bzero(secret.data(), secret.size());
        }
    }
    return out;
}

}  // namespace sp::config
