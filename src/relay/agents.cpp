// SPDX-License-Identifier: Apache-2.0
#include "relay/agents.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "base/event.hpp"

namespace sp::relay {

using log::Level;

namespace {

// Unused tokens one agent may hold at once: its pool plus on-demand ones in
// flight, with room; bounds what a misbehaving agent can make us remember.
constexpr size_t kMaxTokensPerAgent = 4096;

}  // namespace

Agents::Agents(Poller& poller, Listeners& listeners, Shards<Shard>& shards, LogLimiter& reject_log,
               control::TlsContext tls, uint64_t hash_key, Options options)
    : poller_(poller),
      listeners_(listeners),
      shards_(shards),
      reject_log_(reject_log),
      tls_(std::move(tls)),
      options_(std::move(options)),
      tokens_(hash_key) {}

Agents::~Agents() = default;

void Agents::adopt_tls(UniqueFd fd, const SocketAddress& peer, Poller::Clock::time_point accepted) {
    if (stopping_) {
        return;
    }
    const uint64_t id = next_id_++;
    auto s = AgentSession::create(*this, poller_, reject_log_, tls_, std::move(fd), peer,
                                  {id, options_.software_version, accepted + handshake_timeout_});
    if (!s) {
        log::event(Level::Warn, "agent-rejected",
                   {{"AGENT_ADDR", peer.ip().to_string()}, {"REASON", "protocol"}},
                   s.error().describe());
        return;
    }
    ++handshaking_;
    agents_.emplace(id, Agent{std::move(*s)});
}

void Agents::channel(UniqueFd fd, const SocketAddress& peer, const control::Token& t) {
    const auto grant = tokens_.redeem(t, Poller::Clock::now());
    const auto agent = grant ? agents_.find(grant->agent) : agents_.end();
    if (agent == agents_.end() || !agent->second.session->ready()) {
        const int64_t held = reject_log_.allow(peer.ip().to_string(), Poller::Clock::now());
        if (held >= 0) {
            log::event(Level::Warn, "agent-rejected",
                       {{"AGENT_ADDR", peer.ip().to_string()}, {"REASON", "bad-key"}},
                       fmt::format("data channel with an unknown, used or expired token{}",
                                   LogLimiter::held_note(held)));
        }
        return;
    }
    AgentSession& s = *agent->second.session;
    const unsigned owner = token_owner(t);
    // The agent's pool, spread over the workers, bounds what each keeps idle.
    const size_t max_idle = (s.pool() + shards_.size() - 1) / shards_.size();
    shards_.invoke_on(owner,
                      [agent_id = s.id(), name = s.name(), max_idle,
                       f = std::make_shared<UniqueFd>(std::move(fd))](Shard& sh, io::Worker& w) {
                          sh.add_channel(w, agent_id, name, std::move(*f), max_idle);
                      });
}

void Agents::tick(Poller::Clock::time_point now) {
    std::vector<uint64_t> ids;
    for (const auto& [id, a] : agents_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        if (const auto it = agents_.find(id); it != agents_.end()) {
            it->second.session->tick(now);
        }
    }
    tokens_.expire(now, [](uint64_t) {});
}

void Agents::revoke(const std::function<bool(const std::string& identity)>& revoked) {
    std::vector<uint64_t> ids;
    for (const auto& [id, a] : agents_) {
        const AgentSession& s = *a.session;
        if ((s.state() == control::RelayState::AwaitHello || s.ready()) && revoked(s.identity())) {
            ids.push_back(id);
        }
    }
    for (const uint64_t id : ids) {
        if (const auto it = agents_.find(id); it != agents_.end()) {
            it->second.session->revoke_key();
        }
    }
}

void Agents::shutdown() {
    stopping_ = true;
    std::vector<uint64_t> ids;
    for (const auto& [id, a] : agents_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        if (const auto it = agents_.find(id); it != agents_.end()) {
            it->second.session->shutdown();
        }
    }
}

size_t Agents::ready_count() const {
    return static_cast<size_t>(std::count_if(
        agents_.begin(), agents_.end(), [](const auto& kv) { return kv.second.session->ready(); }));
}

bool Agents::claim(AgentSession& s) {
    const auto c = directory_.claim(s.name(), s.identity(), s.id());
    if (c.verdict == control::AgentDirectory::Verdict::Conflict) {
        return false;
    }
    if (c.verdict == control::AgentDirectory::Verdict::Replaces) {
        // A restarted agent may reach us before its old connection is
        // noticed dead: the newer one wins, as the old one cannot be
        // answering anyway.
        if (const auto it = agents_.find(c.holder); it != agents_.end()) {
            it->second.session->replace();
        }
    }
    return true;
}

void Agents::ready(AgentSession& s) {
    const auto it = agents_.find(s.id());
    if (it != agents_.end() && it->second.handshaking) {
        it->second.handshaking = false;
        --handshaking_;
    }
}

control::ConfigResult Agents::apply_config(AgentSession& s, const control::Config& cfg) {
    return listeners_.apply(s.id(), s.name(), cfg);
}

std::vector<control::Token> Agents::issue_tokens(AgentSession& s, unsigned count) {
    const auto it = agents_.find(s.id());
    if (it == agents_.end()) {
        return {};
    }
    // Spread the pool over the workers, so every worker can pair its first
    // clients without asking.
    std::vector<control::Token> out;
    for (unsigned i = 0; i < count; ++i) {
        const unsigned w = (it->second.next_worker++) % static_cast<unsigned>(shards_.size());
        auto t = mint(s.id(), w, 1);
        out.insert(out.end(), t.begin(), t.end());
    }
    return out;
}

void Agents::gone(AgentSession& s) {
    const uint64_t id = s.id();
    directory_.release(s.name(), id);
    // Drop what it served: unused tokens, idle channels, listeners of
    // services nobody else serves. Sessions already paired run on.
    tokens_.void_agent(id);
    shards_.invoke_on_all([id](Shard& sh, io::Worker&) { sh.drop_agent(id); });
    listeners_.remove_agent(id, s.name(), stopping_);
}

void Agents::finished(AgentSession& s) {
    const uint64_t id = s.id();
    const auto it = agents_.find(id);
    if (it == agents_.end()) {
        return;
    }
    if (it->second.handshaking) {
        it->second.handshaking = false;
        --handshaking_;
    }
    // Not now: the session is inside one of its own methods.
    poller_.add_timer(std::chrono::milliseconds(0), [this, id] { agents_.erase(id); });
}

std::vector<control::Token> Agents::mint(uint64_t agent, unsigned worker, unsigned count) {
    std::vector<control::Token> out;
    const auto expires = Poller::Clock::now() + options_.token_lifetime;
    for (unsigned i = 0; i < count && tokens_.outstanding(agent) < kMaxTokensPerAgent; ++i) {
        auto t = make_token(worker);
        if (!t) {
            break;
        }
        tokens_.add(*t, {agent, expires});
        out.push_back(*t);
    }
    return out;
}

void Agents::send_tokens(uint64_t agent, unsigned worker, unsigned count) {
    const auto it = agents_.find(agent);
    if (it == agents_.end() || !it->second.session->ready()) {
        return;
    }
    it->second.session->send_tokens(mint(agent, worker, count));
}

void Agents::need_channel(unsigned worker, const std::string& service) {
    const auto agents = listeners_.agents_of(service);
    if (agents.empty()) {
        return;
    }
    send_tokens(agents[rotate_++ % agents.size()], worker, 1);
}

void Agents::channel_used(unsigned worker, uint64_t agent) {
    const auto it = agents_.find(agent);
    if (it == agents_.end() || it->second.session->pool() == 0 || stopping_) {
        return;
    }
    send_tokens(agent, worker, 1);
}

}  // namespace sp::relay
