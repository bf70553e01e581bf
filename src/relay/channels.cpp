// SPDX-License-Identifier: Apache-2.0
#include "relay/channels.hpp"

#include <sys/socket.h>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"

namespace sp::relay {

using log::Level;

namespace {

// A pooled channel may have died while idle (agent restarted, NAT entry
// expired). A peek tells: EAGAIN means open and silent, as it must be; EOF,
// an error or unexpected bytes mean it is unusable.
bool alive(int fd) {
    char b = 0;
    const ssize_t n = ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

Channels::Channels(unsigned worker, uint64_t hash_key, SendFn send)
    : worker_(worker), tokens_(hash_key), send_(std::move(send)) {}

void Channels::add_agent(uint64_t agent, std::string name, unsigned cap) {
    agents_.insert_or_assign(agent, Agent{std::move(name), PoolPolicy(cap), {}});
}

void Channels::drop_agent(uint64_t agent) {
    tokens_.void_agent(agent);
    agents_.erase(agent);  // closes its idle channels
}

std::vector<control::Token> Channels::issue(uint64_t agent, unsigned count, Clock::time_point now) {
    const auto it = agents_.find(agent);
    const size_t out = tokens_.outstanding(agent);
    if (it == agents_.end() || out >= PoolPolicy::kMaxOutstanding) {
        return {};
    }
    const size_t n = std::min<size_t>(count, PoolPolicy::kMaxOutstanding - out);
    auto tokens = make_tokens(worker_, n);
    if (!tokens) {
        return {};  // the kernel RNG failed: the next tick tries again
    }
    for (const auto& t : *tokens) {
        tokens_.add(t, {agent, now + token_lifetime_});
    }
    return std::move(*tokens);
}

void Channels::reject_token(const SocketAddress& peer) {
    const std::string addr = peer.ip().to_string();
    const int64_t held = token_log_.allow(addr, Clock::now());
    if (held >= 0) {
        log::event(Level::Debug, log::Ev::AgentRejected,
                   {{"AGENT_ADDR", addr},
                    {"REASON", "token"},
                    {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
                   fmt::format("data channel from {} with an unknown, used or expired token{}",
                               peer.to_string(), LogLimiter::held_note(held)));
    }
}

std::optional<Channels::Channel> Channels::redeem(UniqueFd fd, const SocketAddress& peer,
                                                  const control::Token& t, bool early,
                                                  Clock::time_point now) {
    const auto grant = tokens_.redeem(t, now);
    const auto it = grant ? agents_.find(grant->agent) : agents_.end();
    if (it == agents_.end()) {
        reject_token(peer);
        return std::nullopt;
    }
    if (early) {
        // The agent must wait for the binding header (6.1). Such a channel
        // cannot be paired; counting it slows this agent's refills so a
        // broken or hostile agent cannot be kept dialling in a loop.
        it->second.policy.dead();
        const int64_t held = early_log_.allow(it->second.name, now);
        if (held >= 0) {
            log::event(log::Ev::AgentRejected,
                       {{"AGENT", it->second.name},
                        {"AGENT_ADDR", peer.ip().to_string()},
                        {"REASON", "protocol"},
                        {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
                       fmt::format("data channel of agent \"{}\" sent bytes before its binding "
                                   "header or closed: dropped{}",
                                   it->second.name,
                                   held > 0 ? fmt::format(" ({} more not logged)", held) : ""));
        }
        return std::nullopt;
    }
    return Channel{grant->agent, it->second.name, std::move(fd)};
}

void Channels::keep(Channel ch) {
    const auto it = agents_.find(ch.agent);
    if (it == agents_.end() || it->second.idle.size() >= it->second.policy.cap()) {
        return;  // closes ch.fd
    }
    it->second.idle.push_back(std::move(ch.fd));
}

std::optional<Channels::Channel> Channels::take(uint64_t agent) {
    const auto it = agents_.find(agent);
    if (it == agents_.end()) {
        return std::nullopt;
    }
    auto& q = it->second.idle;
    while (!q.empty()) {
        UniqueFd fd = std::move(q.front());
        q.pop_front();
        if (alive(fd.get())) {
            return Channel{agent, it->second.name, std::move(fd)};
        }
        it->second.policy.dead();
    }
    return std::nullopt;
}

void Channels::paired(uint64_t agent) {
    if (const auto it = agents_.find(agent); it != agents_.end()) {
        it->second.policy.paired();
    }
}

void Channels::dead(uint64_t agent) {
    if (const auto it = agents_.find(agent); it != agents_.end()) {
        it->second.policy.dead();
    }
}

void Channels::replenish(uint64_t agent, size_t waiting) {
    const auto it = agents_.find(agent);
    if (it == agents_.end()) {
        return;
    }
    Agent& a = it->second;
    const unsigned n = a.policy.want(a.idle.size(), tokens_.outstanding(agent), waiting);
    if (n == 0) {
        return;
    }
    auto tokens = issue(agent, n, Clock::now());
    if (!tokens.empty()) {
        a.policy.asked();
        send_(agent, std::move(tokens));
    }
}

void Channels::tick(Clock::time_point now, const std::function<size_t(uint64_t)>& waiting) {
    tokens_.expire(now, [](uint64_t) {});
    for (auto& [id, a] : agents_) {
        a.policy.tick();
        // The oldest idle channels go first: the likeliest to have died.
        for (size_t n = a.policy.excess(a.idle.size()); n > 0; --n) {
            a.idle.pop_front();
        }
    }
    std::vector<uint64_t> ids;
    ids.reserve(agents_.size());
    for (const auto& [id, a] : agents_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        replenish(id, waiting(id));
    }
}

size_t Channels::idle() const noexcept {
    size_t n = 0;
    for (const auto& [id, a] : agents_) {
        n += a.idle.size();
    }
    return n;
}

size_t Channels::idle(uint64_t agent) const {
    const auto it = agents_.find(agent);
    return it == agents_.end() ? 0 : it->second.idle.size();
}

std::vector<Channels::PoolView> Channels::pools() const {
    std::vector<PoolView> out;
    out.reserve(agents_.size());
    for (const auto& [id, a] : agents_) {
        out.push_back({id, a.name, a.idle.size(), a.policy.target()});
    }
    return out;
}

}  // namespace sp::relay
