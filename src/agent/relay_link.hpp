// SPDX-License-Identifier: Apache-2.0
// One relay: the control channel the agent dials to it (TCP, TLS 1.3,
// FramedPeer) driven by control::AgentLinkFsm. This object carries out the
// state machine's actions on the control thread's poller; the decisions
// (when to retry, what to send, when the relay is dead) are the FSM's.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/link_id.hpp"
#include "agent/link_policy.hpp"
#include "agent/relay_credentials.hpp"
#include "base/addr.hpp"
#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "config/agent_config.hpp"
#include "control/agent_fsm.hpp"
#include "control/peer.hpp"
#include "control/tls.hpp"

namespace sp::agent {

/// What a link needs from the agent. Control thread only.
class LinkHost {
public:
    /// Look up `host`; the answer comes back through RelayLink::on_resolved.
    virtual void resolve(const std::string& host) = 0;
    /// The relay issued tokens: dial one data channel per token to `relay`.
    virtual void dial_channels(LinkId link, const SocketAddress& relay,
                               std::vector<control::Token> tokens) = 0;
    /// The control channel closed: the link's idle data channels are void.
    virtual void link_closed(LinkId link) = 0;
    /// phase() changed: the link policy may want to start or stop links.
    virtual void phase_changed(LinkId link) = 0;
    /// The relay answered an OUTBOUND_REQUEST of this link (or sent a
    /// result nobody asked for: the host drops it).
    virtual void outbound_result(LinkId link, const control::OutboundResult& result) = 0;

protected:
    ~LinkHost() = default;
};

/// What `sallyportctl relays` shows of a link.
struct LinkStatus {
    std::string address;  // RELAY_ADDR
    control::LinkState state = control::LinkState::Idle;
    std::chrono::system_clock::time_point since;  // when `state` was entered
    std::optional<std::chrono::microseconds> rtt;
    std::string last_error;  // the last relay-disconnected reason and detail; "" if none
    bool standby = false;
};

class RelayLink final {
public:
    /// `hello` and `config` are what the FSM sends after TLS and HELLO_ACK;
    /// `seed` drives its backoff jitter. Starts Idle: call start().
    RelayLink(LinkId id, config::RelayEntry entry, RelayCredentials creds, Poller& poller,
              LinkHost& host, control::Hello hello, control::Config config, uint64_t seed);
    ~RelayLink();
    RelayLink(const RelayLink&) = delete;
    RelayLink& operator=(const RelayLink&) = delete;

    void start();
    void stop(control::StopReason reason);
    /// A resolver answer; ignored unless this link waits for `host`.
    void on_resolved(const std::string& host, const std::optional<IpAddress>& ip);
    /// Once a second: heartbeats and silence.
    void tick(Poller::Clock::time_point now);
    /// A reload produced this CONFIG: sent at once when Ready.
    void new_config(control::Config config);
    /// BACKEND_FAILED for a session of this link; dropped unless Ready.
    void send_backend_failed(control::BackendFailed msg);
    /// OUTBOUND_REQUEST; false (nothing sent) unless Ready, or when the send
    /// failed and the link went down (the caller answers "no relay").
    [[nodiscard]] bool send_outbound(const control::OutboundRequest& msg);
    /// The operator drained or resumed the agent: the relay is told now if
    /// Ready, else after the next HELLO_ACK (AGENT_STATE).
    void set_draining(bool draining);

    [[nodiscard]] LinkStatus status() const;
    /// The kernel's smoothed TCP round-trip time of the control connection
    /// (TCP_INFO), while Ready; nullopt otherwise or if the kernel has none.
    [[nodiscard]] std::optional<std::chrono::microseconds> rtt() const;

    [[nodiscard]] LinkId id() const noexcept { return id_; }
    [[nodiscard]] const config::RelayEntry& entry() const noexcept { return entry_; }
    [[nodiscard]] const std::string& fingerprint() const noexcept { return creds_.fingerprint; }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    /// The address the control channel reached (data channels go there).
    [[nodiscard]] const std::optional<SocketAddress>& address() const noexcept { return address_; }
    [[nodiscard]] LinkPhase phase() const noexcept;
    [[nodiscard]] control::LinkState state() const noexcept { return fsm_.state(); }

private:
    void feed(control::LinkInput in);
    void run(control::LinkAction& a, bool& abort);
    void start_connect();
    void connect_to(const SocketAddress& addr);
    void on_io(uint32_t events);
    void step_handshake();
    void read_frames();
    void send(const control::Message& m, bool& abort);
    void close();
    void arm(control::LinkTimer timer, std::chrono::milliseconds delay);
    void cancel(control::LinkTimer timer);
    void watch(uint32_t events);

    LinkId id_;
    config::RelayEntry entry_;
    RelayCredentials creds_;
    std::string name_;  // entry_.address as written: RELAY_ADDR
    Poller& poller_;
    LinkHost& host_;
    control::AgentLinkFsm fsm_;
    std::deque<control::LinkInput> inputs_;
    bool running_ = false;
    bool resolving_ = false;
    std::optional<SocketAddress> address_;   // what the last connect reached
    UniqueFd fd_;                            // while connecting
    std::optional<control::TlsStream> tls_;  // while handshaking
    std::unique_ptr<control::FramedPeer> peer_;
    int watched_ = -1;
    std::array<uint64_t, 3> timers_{};  // by LinkTimer
    Poller::Clock::time_point ready_since_{};
    std::chrono::system_clock::time_point state_since_ = std::chrono::system_clock::now();
    std::string last_error_;
};

}  // namespace sp::agent
