// SPDX-License-Identifier: Apache-2.0
// agent.toml as typed, validated values (SPEC section 3). Owned by the
// internal admin: the source of truth for which services the relays open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "config/common.hpp"

namespace sp::config {

enum class ProxyProtocol { None, V1, V2 };

struct AgentSection {
    std::string name;  // required; letters, digits, '-', '_', '.'; at most 64
    std::string status_socket = "/run/sallyport/agent.sock";
    std::optional<SocketAddress> metrics_listen;  // as on the relay
    uint32_t pool = 8;  // idle data channels kept per relay; 0 = on demand
    unsigned threads = 0;
    DataPath data_path = DataPath::Splice;
};

struct RelayEntry {
    HostPorts address;  // a host name or literal, single port
    std::string key;    // shared-key mode: path of a one-line "ID SECRET" file
    std::string certificate;
    std::string private_key;
    std::string relay_ca;
    bool standby = false;

    [[nodiscard]] bool shared_key_mode() const { return !key.empty(); }
};

struct Service {
    std::string name;                // unique; same charset as agent.name
    std::vector<HostPorts> listen;   // literal IPs; may be ranges
    std::vector<HostPorts> backend;  // names or literals; may be ranges
    ProxyProtocol proxy_protocol = ProxyProtocol::None;
    std::vector<Cidr> allow_clients;  // empty = all
    std::vector<Cidr> deny_clients;
    uint32_t max_sessions = 0;  // 0 = unlimited
    uint32_t affinity_s = 0;
    // Active TCP connect checks of each backend (agent only: not in CONFIG).
    uint32_t health_check_interval_ms = 2000;  // 0 = no active checks
    uint32_t health_check_timeout_ms = 1000;   // < health_check_interval_ms
    uint32_t health_check_rise = 2;            // consecutive successes to come back up
    uint32_t health_check_fall = 3;            // consecutive failures to go down
    // Services with the same group share a client's backend host; empty =
    // the agent's default group (every service that names none).
    std::string affinity_group;
};

/// [outbound]: the forward proxy's agent side (SPEC section 3).
struct OutboundSection {
    std::string socks5_listen;        // "" = off, else a literal IP:PORT (RFC 1928 server)
    std::string http_proxy_listen;    // "" = off, else a literal IP:PORT (HTTP CONNECT)
    std::string users;                // "" = no authentication; else a "user:password" file, 0600
    std::vector<Cidr> allow_clients;  // internal callers admitted; empty = all
    std::vector<Cidr> deny_clients;

    [[nodiscard]] bool enabled() const {
        return !socks5_listen.empty() || !http_proxy_listen.empty();
    }
};

/// Parsed from agent.toml; error positions and key paths follow the
/// convention in relay_config.hpp ("relay[0].key", "service[1].listen[0]").
/// Validation beyond types: at least one [[relay]], each with exactly one auth
/// mode and a distinct address; unique service names; non-empty listen and
/// backend lists; a backend range only with listen ranges of the same length
/// (a listen range onto one backend port is fine); no two listen entries that
/// would collide on bind (same family, same IP or a wildcard, shared port);
/// nothing the control protocol cannot carry (base/wire_limits.hpp: at most
/// 1024 services, 256 listen entries in one and 4096 in all, 1024 CIDRs per
/// list, "HOST:PORT" backend strings of 255 bytes, a 1 MiB CONFIG); health
/// checks: health_check_interval_ms 0 (off) or 100-3600000, health_check_timeout_ms below
/// it, health_check_rise and health_check_fall 1-100.
struct AgentConfig {
    std::string path;
    AgentSection agent;
    std::vector<RelayEntry> relays;  // at least one
    std::vector<Service> services;
    OutboundSection outbound;
};

/// Payload bytes of the CONFIG message `cfg` becomes on the control channel
/// (control-protocol.md section 3.2; each listen entry and CIDR as its
/// to_string()). parse_agent_config refuses a file for which it would pass
/// wire::kMaxFrame, or which breaks another bound of base/wire_limits.hpp.
[[nodiscard]] size_t wire_config_size(const AgentConfig& cfg);

/// Reads, parses and validates an agent.toml (at most 4 MiB, regular file).
/// When the file has several errors, returns the first in file order, its
/// message saying how many more there are. Does not open key or certificate
/// files. Blocks only on the file read.
[[nodiscard]] Result<AgentConfig> load_agent_config(const std::string& path);
/// The same from text already in memory (`path` names it in messages and is
/// the base for relative file names).
[[nodiscard]] Result<AgentConfig> parse_agent_config(std::string_view text,
                                                     const std::string& path);

/// Every error of an agent.toml text in file order, as relay_config_errors()
/// does for relay.toml: a bad value does not stop the other checks; a whole-
/// file rule (a [[relay]] is required, listeners must not overlap, a relay
/// needs one auth mode) looks only at values that were valid on their own.
/// Empty when the text is valid.
[[nodiscard]] std::vector<Error> agent_config_errors(std::string_view text,
                                                     const std::string& path);

/// --check-config: agent_config_errors() of the file, then the errors of each
/// relay's key file (check_key_file) or certificate files (readable), and
/// of [outbound] users (read_private_file).
/// Empty = OK. Blocks on the file reads only.
[[nodiscard]] std::vector<Error> check_agent_config(const std::string& path);

}  // namespace sp::config
