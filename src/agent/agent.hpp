// SPDX-License-Identifier: Apache-2.0
// The agent daemon's control thread: keeps a control channel to every
// configured relay (dialled out, never accepted), pushes the service config,
// dials data channels for the tokens relays issue, connects each bound
// channel to a backend and hands the pair to a worker's splice pump.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/backend.hpp"
#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "config/agent_config.hpp"
#include "control/backoff.hpp"
#include "control/frame.hpp"
#include "control/peer.hpp"
#include "control/tls.hpp"
#include "io/daemon.hpp"
#include "io/worker.hpp"

namespace sp::agent {

class Agent final {
public:
    [[nodiscard]] static Result<std::unique_ptr<Agent>> create(config::AgentConfig cfg);
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;
    ~Agent();

    /// Runs until SIGTERM/SIGINT and the drain finish; returns the exit code.
    int run();

    struct Link;
    struct Channel;

private:
    explicit Agent(config::AgentConfig cfg);
    [[nodiscard]] Result<void> setup();
    [[nodiscard]] Result<void> build_links();
    void build_selectors();

    // relay links
    void update_wanted();
    void connect_link(Link& l);
    void on_link_event(size_t index, uint32_t events);
    void step_link_handshake(Link& l);
    bool on_link_message(Link& l, control::Message&& m);
    void link_down(Link& l, std::string_view reason, std::string_view message, bool retry);
    void push_config(Link& l);
    [[nodiscard]] control::Config wire_config() const;

    // data channels
    void dial_channel(Link& l, const control::Token& token);
    void on_channel_event(uint64_t id, uint32_t events);
    void on_backend_event(uint64_t id, uint32_t events);
    void read_binding(Channel& c);
    void connect_backend(Channel& c);
    void backend_failed(Channel& c, int err);
    void start_session(Channel& c);
    void close_channel(uint64_t id);

    void tick();
    void reload();
    void begin_drain();

    config::AgentConfig cfg_;
    std::unique_ptr<io::Daemon> daemon_;
    [[nodiscard]] Poller& poller() { return daemon_->poller(); }
    [[nodiscard]] std::vector<std::unique_ptr<io::Worker>>& workers() { return daemon_->workers(); }
    size_t next_worker_ = 0;
    std::vector<std::unique_ptr<Link>> links_;
    std::map<uint64_t, std::unique_ptr<Channel>> channels_;
    uint64_t next_channel_ = 1;
    std::map<std::string, std::unique_ptr<BackendSelector>> selectors_;
    std::atomic<uint64_t> sessions_{0};
    uint32_t generation_ = 1;
    bool stopping_ = false;
};

}  // namespace sp::agent
