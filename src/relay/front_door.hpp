// SPDX-License-Identifier: Apache-2.0
// The relay's control port on one worker: each worker accepts on its own
// SO_REUSEPORT socket of every control_listen address, applies
// allow_agents/deny_agents, bounds unauthenticated connections (in total and
// per address), and classifies each by its first bytes: TLS goes to the
// control thread, a data-channel hello is read whole here and handed on with
// its token. Worker thread only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/addr.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "io/worker.hpp"
#include "relay/admission.hpp"
#include "relay/preauth.hpp"

namespace sp::relay {

/// Who may connect to the control port, and how long they have.
struct AgentRules {
    std::vector<Cidr> allow;  // empty = any
    std::vector<Cidr> deny;
    std::chrono::milliseconds handshake_timeout{5000};
};

class FrontDoor final {
public:
    using Clock = std::chrono::steady_clock;

    class Host {
    public:
        virtual ~Host() = default;
        /// A TLS connection: run its handshake on the control thread.
        /// `accepted` starts its handshake_timeout_ms.
        virtual void tls(UniqueFd fd, const SocketAddress& peer, Clock::time_point accepted) = 0;
        /// A whole data-channel hello was read. `early`: the peer sent more
        /// bytes after it, or closed (the channel is unusable, but its token
        /// is still used up and counted against its agent).
        virtual void channel(io::Worker& w, UniqueFd fd, const SocketAddress& peer,
                             const control::Token& t, bool early) = 0;
    };

    /// `cap` unauthenticated connections on this worker, at most
    /// `per_address` of them from one address.
    FrontDoor(Host& host, size_t cap, size_t per_address, std::shared_ptr<const AgentRules> rules);
    FrontDoor(const FrontDoor&) = delete;
    FrontDoor& operator=(const FrontDoor&) = delete;

    /// Starts accepting on `fd` (this worker's socket of `addr`).
    void add_listener(io::Worker& w, UniqueFd fd, const SocketAddress& addr);
    /// New rules apply to connections accepted from now on.
    void set_rules(std::shared_ptr<const AgentRules> rules) { rules_ = std::move(rules); }
    /// Reload dropped `addr` from control_listen: stops accepting there;
    /// connections already accepted go on.
    void remove_listener(io::Worker& w, const SocketAddress& addr);
    /// Drain: stops accepting and drops unclassified connections.
    void close(io::Worker& w);
    /// Once a second: drops connections past their deadline whose timer
    /// never fired (the ring had no SQE for it).
    void sweep(io::Worker& w, Clock::time_point now);
    [[nodiscard]] size_t pending() const noexcept { return conns_.size(); }

private:
    struct Conn {
        UniqueFd fd;
        SocketAddress peer;
        Clock::time_point deadline;
        Clock::time_point accepted;
        uint64_t wait = 0;  // wait_fd id, or timer id when `timer`
        bool timer = false;
        bool hello = false;  // classified as a data channel
        std::array<uint8_t, control::kChannelHelloSize> buf{};
        size_t have = 0;
    };

    void on_accept(io::Worker& w, UniqueFd fd, const SocketAddress& peer);
    void on_accept_error(const SocketAddress& addr, int err, bool paused);
    void arm(io::Worker& w, uint64_t id);
    void disarm(io::Worker& w, Conn& c);
    void on_ready(io::Worker& w, uint64_t id, int res);
    void classify(io::Worker& w, uint64_t id, Conn& c);
    void read_hello(io::Worker& w, uint64_t id, Conn& c);
    void drop(io::Worker& w, uint64_t id, std::string_view reason, std::string_view message);
    void refuse(const SocketAddress& peer, std::string_view reason, std::string_view message);

    Host& host_;
    PreAuth preauth_;
    std::shared_ptr<const AgentRules> rules_;
    std::vector<std::pair<SocketAddress, uint64_t>> listeners_;  // address, worker listener id
    std::unordered_map<uint64_t, Conn> conns_;
    uint64_t next_id_ = 1;
    bool closed_ = false;
    LogLimiter reject_log_{5, std::chrono::milliseconds(1000)};
    LogLimiter resource_log_{1, std::chrono::milliseconds(5000)};
};

}  // namespace sp::relay
