// SPDX-License-Identifier: Apache-2.0
// One agent's control connection on the relay: the TLS handshake, the framed
// peer after it, and the protocol state machine (control/relay_fsm.hpp) whose
// actions it carries out. What reaches beyond this one connection (the name
// directory, listeners, tokens) it asks of its Host. Control thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/addr.hpp"
#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "control/peer.hpp"
#include "control/relay_fsm.hpp"
#include "control/tls.hpp"
#include "relay/admission.hpp"

namespace sp::relay {

class AgentSession final {
    struct Private {  // passkey: only create() constructs one
        explicit Private() = default;
    };

public:
    /// What a session needs from the rest of the relay. Every call is made on
    /// the control thread, from inside one of the session's own methods; the
    /// host must not destroy the session synchronously (see finished()).
    class Host {
    public:
        virtual ~Host() = default;
        /// Claims the session's name for its identity (AgentDirectory). On a
        /// takeover the host tells the older session replace() before it
        /// returns true. False: the name is held by another identity.
        [[nodiscard]] virtual bool claim(AgentSession& s) = 0;
        /// The session is Ready: serve it (register, log agent-connected).
        virtual void ready(AgentSession& s) = 0;
        /// Applies a CONFIG for a Ready session; returns the CONFIG_RESULT.
        [[nodiscard]] virtual control::ConfigResult apply_config(AgentSession& s,
                                                                 const control::Config& cfg) = 0;
        /// Issue `count` tokens for a Ready session: the workers make and
        /// register them, then the host calls send_tokens() once with all
        /// of them (fewer, or none, when caps are reached or the RNG failed).
        virtual void issue_tokens(AgentSession& s, unsigned count) = 0;
        /// A Ready session left Ready: undo ready() (release the name,
        /// listeners, tokens, idle channels). Established sessions run on.
        virtual void gone(AgentSession& s) = 0;
        /// A Ready session's agent started (true) or stopped (false)
        /// draining: the workers pair its channels only when no other agent
        /// serves a client's service. Undone by gone().
        virtual void set_draining(AgentSession& s, bool draining) = 0;
        /// OUTBOUND_REQUEST from a Ready session: answer it later, exactly
        /// once, with send_outbound_result() (relay/outbound.hpp).
        virtual void outbound(AgentSession& s, const control::OutboundRequest& r) = 0;
        /// The session is Closed: destroy it later, not from inside this call.
        virtual void finished(AgentSession& s) = 0;
    };

    struct Options {
        uint64_t id = 0;  // relay-unique connection id (HELLO_ACK connection_id)
        std::string software_version;
        /// Accept time + handshake_timeout_ms: TLS and HELLO must be done by then.
        Poller::Clock::time_point deadline;
    };

    /// Takes an accepted control connection whose first bytes were a TLS
    /// record and starts the handshake. Fails (fd closed) only when OpenSSL
    /// cannot make a stream or the poller refuses the fd.
    [[nodiscard]] static Result<std::unique_ptr<AgentSession>> create(
        Host& host, Poller& poller, LogLimiter& reject_log, const control::TlsContext& tls,
        UniqueFd fd, const SocketAddress& peer, Options options);

    AgentSession(const AgentSession&) = delete;
    AgentSession& operator=(const AgentSession&) = delete;
    ~AgentSession();

    // Inputs from the host.
    void tick(Poller::Clock::time_point now);
    void replace();
    void revoke_key();
    /// A reload's allow_agents/deny_agents no longer admit its address:
    /// GOODBYE(not-allowed) and close.
    void deny_address();
    /// Reload changed the authentication mode or the agent CA: GOODBYE(reload)
    /// (or a close before TLS finished), so the agent re-authenticates.
    void reauthenticate();
    /// `upgrade`: GOODBYE(reload), so the agent reconnects at once.
    void shutdown(bool upgrade = false);
    /// Sends `tokens` in as few OPEN_CHANNELS frames as kMaxTokens allows.
    void send_tokens(const std::vector<control::Token>& tokens);
    /// Sends the OUTBOUND_RESULT of a request; dropped unless Ready.
    void send_outbound_result(const control::OutboundResult& r);

    [[nodiscard]] uint64_t id() const noexcept { return options_.id; }
    [[nodiscard]] control::RelayState state() const noexcept { return fsm_.state(); }
    [[nodiscard]] bool ready() const noexcept { return fsm_.state() == control::RelayState::Ready; }
    /// Still counted against the pre-authentication cap (not Ready yet, not closed).
    [[nodiscard]] bool handshaking() const noexcept {
        return fsm_.state() == control::RelayState::AwaitTls ||
               fsm_.state() == control::RelayState::AwaitHello;
    }
    [[nodiscard]] const std::string& name() const noexcept { return fsm_.name(); }
    [[nodiscard]] const std::string& identity() const noexcept { return fsm_.identity(); }
    [[nodiscard]] uint16_t pool() const noexcept { return fsm_.pool(); }
    /// The agent's last AGENT_STATE: it asked for no new sessions.
    [[nodiscard]] bool draining() const noexcept { return fsm_.draining(); }
    [[nodiscard]] const SocketAddress& address() const noexcept { return peer_addr_; }
    /// When the session became Ready (steady clock; status listings).
    [[nodiscard]] Poller::Clock::time_point ready_at() const noexcept { return ready_at_; }
    /// The control connection's socket, borrowed for getsockopt (TCP_INFO
    /// round trips); -1 once closed.
    [[nodiscard]] int fd() const noexcept { return fd_; }

    AgentSession(const Private&, Host& host, Poller& poller, LogLimiter& reject_log,
                 const SocketAddress& peer, Options options);

private:
    void on_io(uint32_t events);
    void step_handshake();
    void read_frames();
    void linger();
    void feed(control::RelayInput input);
    void run(std::vector<control::RelayAction> actions);
    void send(const control::Message& m);
    void settle();
    void finish();
    void log_close(const control::relay_out::Close& c);
    void update_poll();

    Host& host_;
    Poller& poller_;
    LogLimiter& reject_log_;
    SocketAddress peer_addr_;
    Options options_;
    control::RelayFsm fsm_;
    int fd_ = -1;  // the socket, owned by tls_ or peer_
    std::optional<control::TlsStream> tls_;
    std::unique_ptr<control::FramedPeer> peer_;
    uint64_t timer_ = 0;  // handshake deadline, then the Closing linger
    Poller::Clock::time_point ready_at_{};
    int depth_ = 0;  // nested feed() calls; settle() runs at depth 0 only
    bool write_failed_ = false;
    std::string write_error_;
    bool lingering_ = false;
    bool finished_ = false;
};

}  // namespace sp::relay
