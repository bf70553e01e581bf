// SPDX-License-Identifier: Apache-2.0
// The relay daemon's control thread: accepts agents on control_listen,
// authenticates them, turns their config pushes into public listeners on the
// workers, issues data-channel tokens and routes arriving channels to the
// worker that needs them. Also owns signals, reload and drain.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "config/relay_config.hpp"
#include "control/frame.hpp"
#include "control/peer.hpp"
#include "control/tls.hpp"
#include "daemon/shell.hpp"
#include "io/worker.hpp"
#include "relay/admission.hpp"
#include "relay/pairing.hpp"
#include "relay/registry.hpp"

namespace sp::relay {

class Relay final {
public:
    /// Sets up everything that can fail at start (TLS context, keys, control
    /// sockets, workers) so main() can exit 1 or 2 with the reason.
    [[nodiscard]] static Result<std::unique_ptr<Relay>> create(config::RelayConfig cfg);

    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;
    ~Relay();

    /// Runs until SIGTERM/SIGINT and the drain finish; returns the exit code.
    int run();

    struct Conn;

private:
    explicit Relay(config::RelayConfig cfg);

    [[nodiscard]] Result<void> load_keys();
    [[nodiscard]] Result<void> setup();

    // Runs `fn` on the control thread (from any thread).
    void post(UniqueFunction<void()> fn) { daemon_->post(std::move(fn)); }

    void on_control_accept(int listen_fd);
    void on_conn_event(uint64_t id, uint32_t events);
    void classify(Conn& c);
    void step_handshake(Conn& c);
    void read_channel_hello(Conn& c);
    void on_peer_event(Conn& c, uint32_t events);
    bool on_message(Conn& c, control::Message&& m);
    void on_hello(Conn& c, const control::Hello& h);
    void apply_config(Conn& c, const control::Config& cfg);
    void close_conn(uint64_t id, std::string_view event, std::string_view reason,
                    std::string_view message);
    void update_poll(Conn& c);

    [[nodiscard]] int open_listener(const SocketAddress& addr, const std::string& service);
    void close_listener(const SocketAddress& addr, const std::string& service);
    void broadcast_services();
    void issue_tokens(Conn& agent, unsigned worker, unsigned count);
    void on_need_channel(unsigned worker, const std::string& service);
    void on_channel_used(unsigned worker, uint64_t agent);

    void tick();
    void reload();
    void begin_drain();
    [[nodiscard]] size_t agent_count() const;

    config::RelayConfig cfg_;
    std::unique_ptr<daemon::Shell> daemon_;
    [[nodiscard]] Poller& poller() { return daemon_->poller(); }
    [[nodiscard]] std::span<io::Worker* const> workers() { return daemon_->workers(); }

    std::unique_ptr<Admission> admission_;
    std::vector<std::unique_ptr<Pairing>> pairings_;
    Registry registry_;
    std::set<std::string> broadcast_names_;

    std::map<std::string, std::vector<uint8_t>> keys_;  // shared-key mode
    std::optional<control::TlsContext> tls_;
    std::vector<UniqueFd> control_fds_;
    std::map<uint64_t, std::unique_ptr<Conn>> conns_;
    uint64_t next_conn_ = 1;
    size_t handshaking_ = 0;

    struct Grant {
        uint64_t agent;
        unsigned worker;
        Poller::Clock::time_point expires;
    };
    std::map<control::Token, Grant> tokens_;
    std::map<std::string, uint64_t> listener_keys_;  // "ip:port" -> key
    uint64_t next_listener_key_ = 1;
    size_t rotate_ = 0;
    uint64_t session_base_ = 0;

    bool stopping_ = false;
    LogLimiter reject_log_{5, std::chrono::milliseconds(1000)};
    // As the workers' accept errors: one line per 5 s while it lasts.
    LogLimiter resource_log_{1, std::chrono::milliseconds(5000)};
};

}  // namespace sp::relay
