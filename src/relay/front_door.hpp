// SPDX-License-Identifier: Apache-2.0
// The relay's control port: accepts on control_listen, applies
// allow_agents/deny_agents, bounds connections that have not authenticated
// yet, classifies each by its first bytes and hands it on: TLS to an agent
// session, a data-channel hello (read whole) to the token check. Control
// thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "base/addr.hpp"
#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "relay/admission.hpp"

namespace sp::relay {

struct AgentRules {
    std::vector<Cidr> allow;  // empty = any
    std::vector<Cidr> deny;
    std::chrono::milliseconds handshake_timeout{5000};
};

class FrontDoor final {
public:
    class Host {
    public:
        virtual ~Host() = default;
        /// A TLS connection: start its agent session. `accepted` starts the
        /// handshake budget.
        virtual void adopt_tls(UniqueFd fd, const SocketAddress& peer,
                               Poller::Clock::time_point accepted) = 0;
        /// A whole data-channel hello was read (nothing after it): verify
        /// the token and route the channel, or close it.
        virtual void channel(UniqueFd fd, const SocketAddress& peer, const control::Token& t) = 0;
        /// Connections the host holds that have not authenticated yet.
        [[nodiscard]] virtual size_t handshaking() const = 0;
    };

    /// Listens on every address (an error names the one that failed).
    [[nodiscard]] static Result<std::unique_ptr<FrontDoor>> create(
        Host& host, Poller& poller, LogLimiter& reject_log,
        const std::vector<SocketAddress>& addresses, AgentRules rules);

    FrontDoor(Host& host, Poller& poller, LogLimiter& reject_log, AgentRules rules);
    FrontDoor(const FrontDoor&) = delete;
    FrontDoor& operator=(const FrontDoor&) = delete;
    ~FrontDoor();

    /// New rules apply to connections accepted from now on.
    void set_rules(AgentRules rules) { rules_ = std::move(rules); }
    /// Drain: stops accepting and drops unclassified connections.
    void close();

private:
    struct Conn;

    void on_accept(int listen_fd);
    void on_event(uint64_t id);
    void classify(Conn& c);
    void read_hello(Conn& c);
    void drop(uint64_t id, std::string_view reason, std::string_view message);

    Host& host_;
    Poller& poller_;
    LogLimiter& reject_log_;
    AgentRules rules_;
    std::vector<UniqueFd> listeners_;
    std::map<uint64_t, std::unique_ptr<Conn>> conns_;
    uint64_t next_id_ = 1;
    bool closed_ = false;
    // Accept errors: one line per 5 s while it lasts.
    LogLimiter resource_log_{1, std::chrono::milliseconds(5000)};
};

}  // namespace sp::relay
