// SPDX-License-Identifier: Apache-2.0
#include "agent/forward_proxy.hpp"

#include <fcntl.h>
#include <string.h>

#include <fmt/format.h>

#include "base/events.hpp"
#include "config/keys.hpp"
#include "io/net.hpp"

namespace sp::agent {

namespace {

constexpr int kBacklog = 1024;

}  // namespace

Result<std::shared_ptr<const OutboundRules>> load_outbound_rules(
    const config::OutboundSection& cfg) {
    auto rules = std::make_shared<OutboundRules>();
    rules->allow_clients = cfg.allow_clients;
    rules->deny_clients = cfg.deny_clients;
    if (!cfg.users.empty()) {
        auto text = config::read_private_file(cfg.users, "users file");
        if (!text) {
            return Unexpected(text.error());
        }
        std::string& secret = *text;
        auto users = outbound::Users::parse(secret, cfg.users);
        ::explicit_bzero(secret.data(), secret.size());
        if (!users) {
            return Unexpected(users.error());
        }
        if (users->empty()) {
            return Unexpected(Error{ErrorKind::Config,
                                    0,
                                    "users file holds no user (expected lines \"user:password\")",
                                    cfg.users,
                                    0,
                                    0,
                                    {}});
        }
        rules->users = std::move(*users);
    }
    return std::shared_ptr<const OutboundRules>(std::move(rules));
}

ForwardProxy::ForwardProxy(daemon::Shell& shell, OutboundLinks& links,
                           std::function<void(int)> sessions)
    : shell_(shell), links_(links), sessions_(std::move(sessions)) {
    shards_.start(shell_.workers(), [this](unsigned i) {
        return std::make_unique<OutboundShard>(i, static_cast<OutboundHost&>(*this));
    });
}

ForwardProxy::~ForwardProxy() = default;

Result<void> ForwardProxy::start(const config::OutboundSection& cfg,
                                 daemon::Inheritance* inherited) {
    cfg_ = cfg;
    if (!cfg.enabled()) {
        return {};
    }
    auto rules = load_outbound_rules(cfg);
    if (!rules) {
        return Unexpected(rules.error());
    }
    shards_.invoke_on_all([r = *rules](OutboundShard& s, io::Worker&) { s.set_rules(r); });
    for (const auto& [text, kind] : {std::pair{cfg.socks5_listen, ProxyKind::Socks5},
                                     std::pair{cfg.http_proxy_listen, ProxyKind::HttpConnect}}) {
        if (text.empty()) {
            continue;
        }
        auto addr = SocketAddress::parse(text);
        if (!addr) {
            return Unexpected(addr.error());  // config validated it: not reached
        }
        const std::string handed_kind =
            kind == ProxyKind::Socks5 ? "outbound-socks5" : "outbound-http";
        std::vector<UniqueFd> fds;
        if (inherited != nullptr) {
            if (auto s = inherited->take(handed_kind, addr->to_string())) {
                fds = std::move(s->fds);
            }
        }
        while (fds.size() < shards_.size()) {
            auto fd = io::listen_tcp(*addr, true, kBacklog);
            if (!fd) {
                log::event(log::Ev::BindFailed,
                           {{log::f::kListenAddr, addr->to_string()},
                            {log::f::kReason, fd.error().describe()}},
                           fmt::format("cannot listen on {} ({}): {}", addr->to_string(),
                                       kind == ProxyKind::Socks5 ? "outbound.socks5_listen"
                                                                 : "outbound.http_proxy_listen",
                                       fd.error().describe()));
                return Unexpected(fd.error());
            }
            fds.push_back(std::move(*fd));
        }
        auto dups = daemon::dup_sockets(fds, addr->to_string());
        if (!dups) {
            return Unexpected(dups.error());
        }
        dups_[{handed_kind, addr->to_string()}] = std::move(*dups);
        for (size_t i = 0; i < fds.size(); ++i) {
            shards_.invoke_on(static_cast<unsigned>(i % shards_.size()),
                              [f = std::move(fds[i]), k = kind, a = *addr](OutboundShard& s,
                                                                           io::Worker& w) mutable {
                                  s.add_listener(w, std::move(f), k, a);
                              });
        }
    }
    return {};
}

Result<void> ForwardProxy::hand_over(std::vector<daemon::HandedSocket>& out) const {
    for (const auto& [key, dups] : dups_) {
        auto fds = daemon::dup_sockets(dups, key.second);
        if (!fds) {
            return Unexpected(fds.error());
        }
        out.push_back({key.first, key.second, "", std::move(*fds)});
    }
    return {};
}

void ForwardProxy::stop_accepting() {
    shards_.invoke_on_all([](OutboundShard& s, io::Worker& w) { s.stop_accepting(w); });
}

Result<void> ForwardProxy::reload(config::OutboundSection& fresh,
                                  std::vector<daemon::KeptKey>& kept) {
    if (fresh.socks5_listen != cfg_.socks5_listen) {
        kept.push_back({"outbound.socks5_listen", "the listening sockets are opened at start"});
        fresh.socks5_listen = cfg_.socks5_listen;
    }
    if (fresh.http_proxy_listen != cfg_.http_proxy_listen) {
        kept.push_back({"outbound.http_proxy_listen", "the listening sockets are opened at start"});
        fresh.http_proxy_listen = cfg_.http_proxy_listen;
    }
    auto rules = load_outbound_rules(fresh);
    if (!rules) {
        // The running rules stay, and the configuration says so.
        fresh.users = cfg_.users;
        fresh.allow_clients = cfg_.allow_clients;
        fresh.deny_clients = cfg_.deny_clients;
        return Unexpected(rules.error());
    }
    cfg_ = fresh;
    shards_.invoke_on_all([r = *rules](OutboundShard& s, io::Worker&) { s.set_rules(r); });
    return {};
}

void ForwardProxy::close_all() {
    shards_.invoke_on_all([](OutboundShard& s, io::Worker& w) { s.close_all(w); });
}

void ForwardProxy::outbound_request(OutboundTicket t, const outbound::Target& target) {
    shell_.post([this, t, target] { request(t, target); });
}

void ForwardProxy::outbound_cancel(OutboundTicket t) {
    shell_.post([this, t] { desk_.cancel(t); });
}

void ForwardProxy::outbound_ended(LinkId link) {
    shell_.post([this, link] { desk_.ended(link); });
}

void ForwardProxy::answer(OutboundTicket t, OutboundAnswer a) {
    a.ticket = t.id;
    shards_.invoke_on(t.shard, [a = std::move(a)](OutboundShard& s, io::Worker& w) mutable {
        s.on_answer(w, std::move(a));
    });
}

void ForwardProxy::fail(OutboundTicket t, outbound::Failure f) {
    OutboundAnswer a;
    a.failure = f;
    answer(t, std::move(a));
}

// No relay up: the caller hears it at once, never waits for one.
void ForwardProxy::request(OutboundTicket t, const outbound::Target& target) {
    const auto relays = links_.ready_relays();
    std::vector<LinkId> ids;
    ids.reserve(relays.size());
    for (const auto& r : relays) {
        ids.push_back(r.id);
    }
    const auto link = desk_.choose(ids);
    if (!link) {
        fail(t, outbound::Failure::NoRelay);
        return;
    }
    const auto id = desk_.open(t, *link);
    if (!id) {
        fail(t, outbound::Failure::Limit);
        return;
    }
    if (!links_.send_outbound(*link, control::OutboundRequest{*id, target.host, target.port})) {
        // Not Ready any more, or the send failed and took the link down:
        // then link_down() has answered the request already and this finds
        // nothing.
        if (desk_.answer(*link, *id, false)) {
            fail(t, outbound::Failure::NoRelay);
        }
    }
}

void ForwardProxy::on_result(LinkId link, const control::OutboundResult& r) {
    const bool ok = r.status == control::OutboundStatus::Ok;
    const auto t = desk_.answer(link, r.request_id, ok);
    if (!t) {
        return;  // not ours (any more): dropped
    }
    OutboundAnswer a;
    a.link = link;
    if (!ok) {
        a.failure = outbound::failure_of(r.status);
        a.error = r.error;
    } else {
        a.token = r.token;
    }
    for (const auto& relay : links_.ready_relays()) {
        if (relay.id == link) {
            a.relay = relay.address;
            a.relay_name = relay.name;
        }
    }
    if (ok && a.relay_name.empty()) {
        desk_.ended(link);
        a.failure = outbound::Failure::NoRelay;
    }
    answer(*t, std::move(a));
}

void ForwardProxy::link_down(LinkId link) {
    for (const auto& t : desk_.link_down(link)) {
        fail(t, outbound::Failure::NoRelay);
    }
}

}  // namespace sp::agent
