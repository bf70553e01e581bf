// SPDX-License-Identifier: Apache-2.0
// One worker's share of the forward proxy: its SO_REUSEPORT listeners on
// socks5_listen and http_proxy_listen, the internal callers it accepted
// (CIDR admission, the SOCKS5 or CONNECT handshake under a deadline), the
// wait for the relay's OUTBOUND_RESULT (asked for by message through the
// control thread), the data channel it dials with the relay's token, the
// binding header, the reply, and the splice. Everything of one caller
// happens on the worker that accepted it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/link_id.hpp"
#include "agent/outbound_desk.hpp"
#include "base/addr.hpp"
#include "base/log_limiter.hpp"
#include "base/unique_fd.hpp"
#include "control/frame.hpp"
#include "io/worker.hpp"
#include "outbound/reply.hpp"
#include "outbound/target.hpp"
#include "outbound/users.hpp"

namespace sp::agent {

/// Who may use the proxy, shared read-only by every worker; replaced whole
/// on reload (connections keep the rules they were accepted under).
struct OutboundRules {
    std::vector<Cidr> allow_clients;  // empty = all
    std::vector<Cidr> deny_clients;   // wins over allow
    outbound::Users users;            // empty = no authentication

    /// Deny wins; an empty allow list admits everyone.
    [[nodiscard]] bool admits(const IpAddress& ip) const noexcept;
};

/// What a shard asks of the rest of the agent. Any worker thread; must
/// not block (implementations post to the control thread).
class OutboundHost {
public:
    /// Send an OUTBOUND_REQUEST for `target` on the least loaded Ready
    /// relay; the answer comes back as OutboundShard::on_answer on the
    /// ticket's shard, always (NoRelay when no relay is up).
    virtual void outbound_request(OutboundTicket t, const outbound::Target& target) = 0;
    /// The shard gave up waiting for `t`'s answer.
    virtual void outbound_cancel(OutboundTicket t) = 0;
    /// A request the relay accepted on `link` is over (session closed, or
    /// the data channel failed): the link's load goes down.
    virtual void outbound_ended(LinkId link) = 0;
    /// A spliced session started (+1) or ended (-1): the drain waits for zero.
    virtual void session_count(int delta) = 0;

protected:
    ~OutboundHost() = default;
};

/// The relay's answer to one request, as the control thread forwards it.
struct OutboundAnswer {
    uint64_t ticket = 0;
    std::optional<outbound::Failure> failure;  // nullopt: accepted
    int error = 0;                             // errno for ConnectFailed
    control::Token token{};
    LinkId link{};
    SocketAddress relay;     // where to dial the data channel
    std::string relay_name;  // RELAY_ADDR
};

enum class ProxyKind : uint8_t { Socks5, HttpConnect };

/// Worker thread only, except construction and destruction (control
/// thread, while the worker does not run).
class OutboundShard final {
public:
    OutboundShard(unsigned index, OutboundHost& host);
    ~OutboundShard();
    OutboundShard(const OutboundShard&) = delete;
    OutboundShard& operator=(const OutboundShard&) = delete;

    /// Starts accepting on `fd` (this worker's SO_REUSEPORT socket).
    void add_listener(io::Worker& w, UniqueFd fd, ProxyKind kind, const SocketAddress& addr);
    /// New callers get these rules; connections keep theirs.
    void set_rules(std::shared_ptr<const OutboundRules> rules) { rules_ = std::move(rules); }
    /// The control thread's answer to one of this shard's requests.
    void on_answer(io::Worker& w, OutboundAnswer a);
    /// A binary upgrade's successor accepts now: stop accepting (the
    /// socket lives on in the successor); callers accepted finish.
    void stop_accepting(io::Worker& w);
    /// Drain: stops accepting and closes every caller not spliced yet;
    /// spliced sessions run on.
    void close_all(io::Worker& w);

    /// Callers accepted and not spliced yet (tests, status).
    [[nodiscard]] size_t handshakes() const noexcept { return conns_.size(); }

    struct Conn;

private:
    void on_accept(io::Worker& w, UniqueFd fd, ProxyKind kind, const SocketAddress& peer);
    void on_client_readable(io::Worker& w, uint64_t id, int res);
    void handshake_done(io::Worker& w, uint64_t id, Conn& c);
    void on_dialled(io::Worker& w, uint64_t id, int res);
    void on_channel_readable(io::Worker& w, uint64_t id, int res);
    void start_splice(io::Worker& w, uint64_t id, Conn& c, const control::Binding& b);
    /// Answers the caller with `f` (SOCKS5 code or HTTP status), logs
    /// outbound-rejected (rate-limited) and forgets it.
    void refuse(io::Worker& w, uint64_t id, outbound::Failure f, int err, std::string_view why);
    /// Forgets a caller: cancels its wait and timer, tells the control
    /// thread what it must know, closes its sockets.
    void drop(io::Worker& w, uint64_t id);
    void arm_deadline(io::Worker& w, uint64_t id, Conn& c, std::chrono::milliseconds d);

    unsigned index_;
    OutboundHost& host_;
    std::shared_ptr<const OutboundRules> rules_ = std::make_shared<const OutboundRules>();
    std::vector<uint64_t> listeners_;
    std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
    uint64_t next_ = 1;
    bool closed_ = false;
    log::LogLimiter reject_log_{5, std::chrono::seconds(10)};
};

}  // namespace sp::agent
