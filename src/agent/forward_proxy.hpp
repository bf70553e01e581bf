// SPDX-License-Identifier: Apache-2.0
// The forward proxy's control-thread half ([outbound] on the agent): opens
// socks5_listen and http_proxy_listen on every io worker, publishes the
// admission rules and users to them, and carries their requests to a relay
// (OUTBOUND_REQUEST on the least loaded Ready link, OutboundDesk) and the
// relays' answers back to them, by message only. The callers themselves
// live on the workers (OutboundShard).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/link_id.hpp"
#include "agent/outbound_desk.hpp"
#include "agent/outbound_shard.hpp"
#include "base/addr.hpp"
#include "base/result.hpp"
#include "config/agent_config.hpp"
#include "control/frame.hpp"
#include "daemon/reload.hpp"
#include "daemon/shell.hpp"
#include "daemon/upgrade.hpp"
#include "io/sharded.hpp"

namespace sp::agent {

/// What the proxy needs of the relay links. Control thread only.
class OutboundLinks {
public:
    struct Relay {
        LinkId id{};
        SocketAddress address;  // what the control channel reached: the data channel goes there
        std::string name;       // RELAY_ADDR
    };
    /// Links that are Ready now, in a stable order.
    [[nodiscard]] virtual std::vector<Relay> ready_relays() const = 0;
    /// Sends OUTBOUND_REQUEST on `link`; false when it is not Ready or the
    /// send failed.
    [[nodiscard]] virtual bool send_outbound(LinkId link, const control::OutboundRequest& req) = 0;

protected:
    ~OutboundLinks() = default;
};

/// Reads [outbound] users (the key files' checks: 0600, owner) and builds
/// the rules the workers apply. Blocks on the file read only.
[[nodiscard]] Result<std::shared_ptr<const OutboundRules>> load_outbound_rules(
    const config::OutboundSection& cfg);

class ForwardProxy final : private OutboundHost {
public:
    /// `sessions`: called from workers with +1/-1 per spliced session (the
    /// drain waits for the agent's total). Creates one shard per worker of
    /// `shell`; nothing listens before start().
    ForwardProxy(daemon::Shell& shell, OutboundLinks& links, std::function<void(int)> sessions);
    ~ForwardProxy();
    ForwardProxy(const ForwardProxy&) = delete;
    ForwardProxy& operator=(const ForwardProxy&) = delete;

    /// Loads the users and opens the listeners (SO_REUSEPORT, one socket
    /// per worker and address; after a binary upgrade the predecessor's
    /// sockets of `inherited` first, so callers already queued are served).
    /// An error (users file refused, bind failed) is logged and returned:
    /// the agent does not start half a proxy.
    [[nodiscard]] Result<void> start(const config::OutboundSection& cfg,
                                     daemon::Inheritance* inherited);
    /// SIGUSR2: copies of the listening sockets for the successor, kinds
    /// "outbound-socks5" and "outbound-http", appended to `out`.
    [[nodiscard]] Result<void> hand_over(std::vector<daemon::HandedSocket>& out) const;
    /// The successor accepts now: stop accepting; callers already accepted
    /// finish their requests.
    void stop_accepting();
    /// Applies a reload's rules and users to new callers. The listen
    /// addresses keep their running values (reported in `kept`). A users
    /// file that fails keeps the running rules and is returned.
    [[nodiscard]] Result<void> reload(config::OutboundSection& fresh,
                                      std::vector<daemon::KeptKey>& kept);
    /// The relay of `link` answered (control thread).
    void on_result(LinkId link, const control::OutboundResult& r);
    /// `link`'s control channel closed: its open requests fail (no-relay).
    void link_down(LinkId link);
    /// Drain: stop accepting; callers not spliced yet are closed.
    void close_all();

private:
    // OutboundHost (worker threads): post to the control thread.
    void outbound_request(OutboundTicket t, const outbound::Target& target) override;
    void outbound_cancel(OutboundTicket t) override;
    void outbound_ended(LinkId link) override;
    void session_count(int delta) override { sessions_(delta); }

    void request(OutboundTicket t, const outbound::Target& target);
    void answer(OutboundTicket t, OutboundAnswer a);
    void fail(OutboundTicket t, outbound::Failure f);

    daemon::Shell& shell_;
    OutboundLinks& links_;
    std::function<void(int)> sessions_;
    io::Sharded<OutboundShard> shards_;
    OutboundDesk desk_;
    config::OutboundSection cfg_;
    // Copies of every listening socket by kind and address, kept for a
    // binary upgrade's hand-over (the workers own the originals).
    std::map<std::pair<std::string, std::string>, std::vector<UniqueFd>> dups_;
};

}  // namespace sp::agent
