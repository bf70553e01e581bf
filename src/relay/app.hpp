// SPDX-License-Identifier: Apache-2.0
// sallyport-relay's composition root: builds the daemon shell, the TLS
// context, the per-worker shards, the listener set, the agents and the
// control port, wires them together, and orchestrates reload and drain.
// Behaviour lives in those objects; this file only connects them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "config/relay_config.hpp"
#include "control/tls.hpp"
#include "daemon/shell.hpp"
#include "io/sharded.hpp"
#include "relay/admin_commands.hpp"
#include "relay/admission.hpp"
#include "relay/agents.hpp"
#include "relay/listeners.hpp"
#include "relay/outbound.hpp"
#include "relay/shard.hpp"

namespace sp::relay {

class App final {
    struct Private {  // passkey: only create() constructs one
        explicit Private() = default;
    };

public:
    /// Sets up everything that can fail at start (TLS context, keys, control
    /// sockets, workers) so main() can exit 1 or 2 with the reason.
    [[nodiscard]] static Result<std::unique_ptr<App>> create(config::RelayConfig cfg);

    App(const Private&, config::RelayConfig cfg);
    App(const App&) = delete;
    App& operator=(const App&) = delete;
    ~App();

    /// Runs until SIGTERM/SIGINT and the drain finish; returns the exit code.
    int run();

private:
    [[nodiscard]] Result<void> setup();
    /// The agents' TLS context for `cfg`'s mode (loading the key file in
    /// shared-key mode when none is loaded yet).
    [[nodiscard]] Result<control::TlsContext> make_tls(const config::RelayConfig& cfg);
    [[nodiscard]] Result<void> load_keys(const std::string& path);
    /// Reload's [auth]: new keys, certificates or mode apply to the next
    /// handshake, and connections they no longer cover are closed. On
    /// failure `fresh`'s [auth] is set back to the running one and the
    /// error (logged) returned.
    [[nodiscard]] std::optional<Error> reload_auth(config::RelayConfig& fresh);

    void tick();
    /// SIGHUP and `sallyportctl reload`: an invalid file is returned (and
    /// logged as reload-failed); the running configuration stays.
    [[nodiscard]] Result<void> reload();
    /// SIGTERM, or `upgrade`: the successor took over the sockets (agents
    /// get GOODBYE(reload) and reconnect to it).
    void begin_drain(bool upgrade = false);
    /// SIGUSR2: the control port's and the public listeners' sockets.
    [[nodiscard]] Result<std::vector<daemon::HandedSocket>> hand_over() const;
    [[nodiscard]] Result<void> listen_control();
    /// Binds (or takes from a predecessor) one control socket per worker
    /// for `addr`; logs control-listen or bind-failed.
    [[nodiscard]] Result<void> open_control(const SocketAddress& addr);
    /// Stops accepting agents on `addr`; connected ones stay.
    void close_control(const SocketAddress& addr);
    [[nodiscard]] std::shared_ptr<const AgentRules> agent_rules() const;
    [[nodiscard]] ShardLimits shard_limits() const;

    config::RelayConfig cfg_;
    // Declared first so it is destroyed last: the workers it owns use the
    // shards and the admission below until they are joined.
    std::unique_ptr<daemon::Shell> shell_;
    std::map<std::string, std::vector<uint8_t>> keys_;  // shared-key mode
    std::string agent_ca_bytes_;  // certificate mode: the CA file as loaded, to see it change
    std::unique_ptr<Admission> admission_;
    io::Sharded<Shard> shards_;
    std::unique_ptr<Listeners> listeners_;
    LogLimiter reject_log_{5, std::chrono::milliseconds(1000)};
    std::unique_ptr<Agents> agents_;
    std::unique_ptr<AdminCommands> admin_;
    std::unique_ptr<Outbound> outbound_;  // forward proxy requests
    // Duplicates of the control port's sockets ("ip:port" -> one per
    // worker), for a binary upgrade; the workers own the originals.
    std::map<std::string, std::vector<UniqueFd>> control_dups_;
    bool stopping_ = false;
};

}  // namespace sp::relay
