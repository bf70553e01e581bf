// SPDX-License-Identifier: Apache-2.0
// The agent's composition root: builds the daemon shell, one RelayLink per
// [[relay]], one Shard per worker and the resolver, wires them through their
// host interfaces, and orchestrates reload and drain. Nothing else lives
// here: links, shards, policy and resolution are their own objects.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/admin_commands.hpp"
#include "agent/forward_proxy.hpp"
#include "agent/link_id.hpp"
#include "agent/relay_link.hpp"
#include "agent/resolver.hpp"
#include "agent/shard.hpp"
#include "base/result.hpp"
#include "config/agent_config.hpp"
#include "daemon/shell.hpp"
#include "io/sharded.hpp"

namespace sp::agent {

class App final : private LinkHost, private ShardHost, private AgentView, private OutboundLinks {
    struct Private {  // passkey: only create() constructs one
        explicit Private() = default;
    };

public:
    /// Loads every relay's credentials (key files checked), creates the
    /// workers, shards and resolver. Nothing is dialled before run().
    [[nodiscard]] static Result<std::unique_ptr<App>> create(config::AgentConfig cfg);
    App(Private /*key*/, config::AgentConfig cfg);
    ~App();
    App(const App&) = delete;
    App& operator=(const App&) = delete;

    /// Runs until SIGTERM/SIGINT and the drain finish; returns the exit code.
    int run();

private:
    [[nodiscard]] Result<void> setup();
    [[nodiscard]] Result<std::unique_ptr<RelayLink>> make_link(const config::RelayEntry& e);
    void publish_services();
    void resolve_backends();
    void apply_policy();
    void tick();
    void reload();
    /// Reads and applies the file (SIGHUP, sallyportctl reload); a refused
    /// file keeps the running configuration and is returned (logged here).
    [[nodiscard]] Result<void> apply_reload();
    void begin_drain();
    /// The successor of a binary upgrade is ready: retire the links.
    void retire();
    void on_answer(const Resolver::Answer& a);

    // LinkHost (control thread)
    void resolve(const std::string& host) override;
    void dial_channels(LinkId link, const SocketAddress& relay,
                       std::vector<control::Token> tokens) override;
    void link_closed(LinkId link) override;
    void phase_changed(LinkId link) override;
    void outbound_result(LinkId link, const control::OutboundResult& result) override {
        proxy_->on_result(link, result);
    }
    // OutboundLinks (control thread)
    [[nodiscard]] std::vector<Relay> ready_relays() const override;
    [[nodiscard]] bool send_outbound(LinkId link, const control::OutboundRequest& req) override;
    // ShardHost (any worker thread)
    void backend_down(uint64_t gen, const std::string& service, size_t index) override;
    void backend_health(uint64_t gen, const std::string& service, size_t index, bool up) override;
    void backend_failed(LinkId link, control::BackendFailed msg) override;
    void session_count(int delta) override;
    void on_shard(unsigned shard, UniqueFunction<void(Shard&, io::Worker&)> fn) override;
    [[nodiscard]] unsigned shard_count() const override {
        return static_cast<unsigned>(shards_.size());
    }
    // AgentView (control thread)
    [[nodiscard]] std::vector<std::pair<LinkId, LinkStatus>> links() const override;
    [[nodiscard]] const config::AgentConfig& agent_config() const override { return cfg_; }
    void set_draining(bool draining) override;
    [[nodiscard]] bool draining() const override { return draining_; }

    config::AgentConfig cfg_;
    std::unique_ptr<daemon::Shell> shell_;
    io::Sharded<Shard> shards_;  // one per worker, used on its thread
    std::unique_ptr<Resolver> resolver_;
    std::unique_ptr<ForwardProxy> proxy_;  // [outbound]: shards used on the workers' threads
    std::map<LinkId, std::unique_ptr<RelayLink>> links_;
    uint64_t next_link_ = 1;
    uint32_t generation_ = 1;           // CONFIG generation
    uint64_t services_generation_ = 0;  // failure marks refer to this
    unsigned next_shard_ = 0;
    bool stopping_ = false;
    // A binary upgrade handed over: links stay up until the successor's
    // connections replace them (then they stop instead of reconnecting),
    // or until retire_deadline_; then the drain starts.
    bool retiring_ = false;
    Poller::Clock::time_point retire_deadline_{};
    bool draining_ = false;  // sallyportctl drain: relays prefer other agents
    bool in_policy_ = false;
    bool policy_again_ = false;
    std::atomic<int64_t> sessions_{0};
    Poller::Clock::time_point last_resolve_{};
};

}  // namespace sp::agent
