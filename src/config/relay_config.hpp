// SPDX-License-Identifier: Apache-2.0
// relay.toml as typed, validated values (SPEC section 3). Owned by the DMZ
// admin: these settings protect the DMZ from a misbehaving agent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "config/common.hpp"

namespace sp::config {

// Error positions and key paths, shared by relay.toml, agent.toml and key files:
// - Every error is ErrorKind::Config with file, 1-based line and column, and key.
// - The position is the offending value's (an array element's own position for
//   list entries), the key's for an unknown key, or the enclosing table's header
//   for a missing key (1:1 when the whole table is absent). TOML syntax errors
//   carry toml++'s position and an empty key.
// - `key` is a dotted path: "relay.threads", "auth.allow_agents[2]"; entries of
//   an array of tables are indexed from 0 like their elements: "relay[0].address",
//   "service[1].listen[0]". A whole-table error names the table ("auth", "relay").
// - Key files name the key ID (or nothing when the ID itself is bad).
//
// Paths to files (keys, certificates) that are relative resolve against the
// directory of the configuration file; status_socket must be absolute.

struct RelaySection {
    unsigned threads = 0;  // 0 = one per online CPU
    DataPath data_path = DataPath::Splice;
    std::vector<SocketAddress> control_listen;  // default 0.0.0.0:44500
    std::vector<HostPorts> allow_listen;        // literal IPs only; default 0.0.0.0:1-65535;
                                                // an explicit [] lets agents open nothing
    std::string status_socket = "/run/sallyport/relay.sock";
    std::optional<SocketAddress> metrics_listen;  // Prometheus GET /metrics; empty = off
    uint32_t drain_timeout_s = 30;
};

/// Exactly one mode: certificate mode when certificate, private_key and
/// agent_ca are set (all three; `keys` must then be absent), else shared-key
/// mode with `keys`, which defaults to relay.keys beside the config file.
struct AuthSection {
    std::string keys;         // path of the "ID SECRET" file; "" = certificate mode
    std::string certificate;  // certificate mode: all three set together
    std::string private_key;
    std::string agent_ca;
    std::vector<Cidr> allow_agents;  // empty = any
    std::vector<Cidr> deny_agents;
};

struct LimitsSection {
    uint32_t max_sessions = 100000;
    uint32_t max_sessions_per_client = 0;            // 0 = unlimited
    uint32_t max_new_sessions_per_client_per_s = 0;  // 0 = unlimited
    uint32_t pending_timeout_ms = 10000;
    uint32_t handshake_timeout_ms = 5000;
    uint32_t idle_timeout_s = 0;  // 0 = none
    // How long a service's listeners outlive its last agent's control
    // channel (a blip, an agent restart); 0 = closed at once.
    uint32_t listener_grace_ms = 0;
    // Forward-proxy sessions open at once (connecting, waiting for their
    // data channel, or spliced), relay-wide and per agent name; 0 = unlimited.
    uint32_t max_outbound_sessions = 0;
    uint32_t max_outbound_sessions_per_agent = 0;
};

/// One `[outbound] allow` entry: "HOST:PORT" (host may be a name) or
/// "CIDR:P1-P2" ("[V6CIDR]:P1-P2" for IPv6). Either form takes a single port
/// or a range. A literal IP as HOST is stored as a /32 or /128 `cidr`, so
/// `host` is only ever a name.
struct OutboundRule {
    std::string host;  // set when the entry names a host
    std::optional<Cidr> cidr;
    PortRange ports;
};

struct RelayConfig {
    std::string path;  // the file it came from, for messages
    RelaySection relay;
    AuthSection auth;
    LimitsSection limits;
    std::vector<OutboundRule> outbound_allow;      // empty = forward proxy disabled
    uint32_t outbound_connect_timeout_ms = 10000;  // [outbound] connect_timeout_ms

    [[nodiscard]] bool shared_key_mode() const { return !auth.keys.empty(); }
};

/// Reads, parses and validates a relay.toml. Errors are ErrorKind::Config with
/// file, line, column and key set (the position of the offending value, or of
/// the table for a missing key). When the file has several errors, this is
/// the first in file order, its message saying how many more there are. Does
/// not open key or certificate files.
[[nodiscard]] Result<RelayConfig> load_relay_config(const std::string& path);

/// The same from text already in memory (`path` is used in messages only).
[[nodiscard]] Result<RelayConfig> parse_relay_config(std::string_view text,
                                                     const std::string& path);

/// Every error of a relay.toml text in file order, not only the first: a bad
/// value does not stop the checks of other keys. A TOML syntax error ends
/// parsing, so it is the only error then; a whole-file rule (an auth mode is
/// required) is checked only when the keys it depends on were valid, so one
/// mistake gives one error. At most 100 errors, then one saying how many
/// more. Empty when the text is valid.
[[nodiscard]] std::vector<Error> relay_config_errors(std::string_view text,
                                                     const std::string& path);

/// --check-config: relay_config_errors() of the file, then the errors of the
/// files it names, as a start would read them (the keys file: format, mode
/// and owner, see load_keys; certificate files: readable). Empty = OK.
/// Blocks on the file reads only.
[[nodiscard]] std::vector<Error> check_relay_config(const std::string& path);

/// True when an agent may ask the relay to listen on `want`: some allow_listen
/// entry has the same IP (or 0.0.0.0 / [::] of the same family) and contains
/// every port of the range.
/// False when `want` has no literal IP.
[[nodiscard]] bool listen_allowed(const RelayConfig& cfg, const HostPorts& want);

/// True when the forward proxy may connect to `port` on `ip`, which the agent
/// asked for by `host` ("" when it gave a literal address). A name rule
/// matches the requested name case-insensitively (no DNS here); a CIDR rule
/// matches the address. Always false when [outbound] allow is empty.
[[nodiscard]] bool outbound_allowed(const RelayConfig& cfg, std::string_view host,
                                    const IpAddress& ip, uint16_t port);

}  // namespace sp::config
