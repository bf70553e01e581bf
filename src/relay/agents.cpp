// SPDX-License-Identifier: Apache-2.0
#include "relay/agents.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"

namespace sp::relay {

Agents::Agents(Poller& poller, Listeners& listeners, io::Sharded<Shard>& shards,
               LogLimiter& reject_log, control::TlsContext tls, Options options)
    : poller_(poller),
      listeners_(listeners),
      shards_(shards),
      reject_log_(reject_log),
      tls_(std::move(tls)),
      options_(std::move(options)),
      preauth_(kMaxHandshaking, kMaxHandshaking / kHandshakingPerAddressDivisor) {}

Agents::~Agents() = default;

void Agents::adopt_tls(UniqueFd fd, const SocketAddress& peer, Poller::Clock::time_point accepted) {
    if (stopping_) {
        return;
    }
    if (rules_ && !client_allowed(peer.ip(), rules_->allow, rules_->deny)) {
        // Accepted under rules a reload has since narrowed: closed unread.
        if (const int64_t held = reject_log_.allow(peer.ip().to_string(), Poller::Clock::now());
            held >= 0) {
            log::event(log::Ev::AgentRejected,
                       {{"AGENT_ADDR", peer.ip().to_string()},
                        {"REASON", "not-allowed"},
                        {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
                       fmt::format("connection from {} refused by allow_agents/deny_agents{}",
                                   peer.to_string(), LogLimiter::held_note(held)));
        }
        return;
    }
    if (!preauth_.enter(peer.ip())) {
        const int64_t held = reject_log_.allow(peer.ip().to_string(), Poller::Clock::now());
        if (held >= 0) {
            log::event(log::Ev::AgentRejected,
                       {{"AGENT_ADDR", peer.ip().to_string()},
                        {"REASON", "handshake-limit"},
                        {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
                       fmt::format("TLS connection from {} closed: too many handshakes from this "
                                   "address or in total{}",
                                   peer.to_string(), LogLimiter::held_note(held)));
        }
        return;
    }
    const uint64_t id = next_id_++;
    auto s = AgentSession::create(*this, poller_, reject_log_, tls_, std::move(fd), peer,
                                  {id, options_.software_version, accepted + handshake_timeout_});
    if (!s) {
        preauth_.leave(peer.ip());
        log::event(log::Ev::AgentRejected,
                   {{"AGENT_ADDR", peer.ip().to_string()}, {"REASON", "protocol"}},
                   s.error().describe());
        return;
    }
    agents_.emplace(id, Agent{std::move(*s), true, 0, {}});
}

void Agents::leave_handshake(Agent& a, const AgentSession& s) {
    if (a.handshaking) {
        a.handshaking = false;
        preauth_.leave(s.address().ip());
    }
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
            refused_.insert(id);
            it->second.session->revoke_key();
        }
    }
}

void Agents::set_tls(control::TlsContext tls, bool reauthenticate) {
    tls_ = std::move(tls);
    if (!reauthenticate) {
        return;
    }
    std::vector<uint64_t> ids;
    for (const auto& [id, a] : agents_) {
        const auto st = a.session->state();
        if (st == control::RelayState::AwaitTls || st == control::RelayState::AwaitHello ||
            a.session->ready()) {
            ids.push_back(id);
        }
    }
    for (const uint64_t id : ids) {
        if (const auto it = agents_.find(id); it != agents_.end()) {
            replaced_.insert(id);
            it->second.session->reauthenticate();
        }
    }
}

void Agents::deny(std::shared_ptr<const AgentRules> rules) {
    // Connections a worker accepted under the old rules and posted here
    // before the reload are checked when they arrive (adopt_tls).
    rules_ = std::move(rules);
    std::vector<uint64_t> ids;
    for (const auto& [id, a] : agents_) {
        const AgentSession& s = *a.session;
        if (s.state() != control::RelayState::Closing && s.state() != control::RelayState::Closed &&
            !client_allowed(s.address().ip(), rules_->allow, rules_->deny)) {
            ids.push_back(id);
        }
    }
    for (const uint64_t id : ids) {
        if (const auto it = agents_.find(id); it != agents_.end()) {
            refused_.insert(id);
            it->second.session->deny_address();
        }
    }
}

void Agents::shutdown(bool upgrade) {
    stopping_ = true;
    std::vector<uint64_t> ids;
    for (const auto& [id, a] : agents_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        if (const auto it = agents_.find(id); it != agents_.end()) {
            it->second.session->shutdown(upgrade);
        }
    }
}

size_t Agents::ready_count() const {
    return static_cast<size_t>(std::count_if(
        agents_.begin(), agents_.end(), [](const auto& kv) { return kv.second.session->ready(); }));
}

std::vector<const AgentSession*> Agents::ready_sessions() const {
    std::vector<const AgentSession*> out;
    for (const auto& [id, a] : agents_) {
        if (a.session->ready()) {
            out.push_back(a.session.get());
        }
    }
    return out;
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
            replaced_.insert(c.holder);
            it->second.session->replace();
        }
    }
    return true;
}

void Agents::ready(AgentSession& s) {
    const auto it = agents_.find(s.id());
    if (it == agents_.end()) {
        return;
    }
    leave_handshake(it->second, s);
    // Each worker keeps its share of the pool: pool / workers, the first
    // pool % workers one more, so the shares add up to pool exactly.
    const auto workers = static_cast<unsigned>(shards_.size());
    for (unsigned i = 0; i < workers; ++i) {
        const unsigned cap = s.pool() / workers + (i < s.pool() % workers ? 1 : 0);
        shards_.invoke_on(i, [id = s.id(), name = s.name(), cap](Shard& sh, io::Worker& w) {
            sh.add_agent(w, id, name, cap);
        });
    }
}

control::ConfigResult Agents::apply_config(AgentSession& s, const control::Config& cfg) {
    return listeners_.apply(s.id(), s.name(), cfg);
}

void Agents::issue_tokens(AgentSession& s, unsigned count) {
    const auto it = agents_.find(s.id());
    if (it == agents_.end() || count == 0) {
        return;
    }
    // The HELLO pool, spread over the workers as ready() split the caps, so
    // every worker can pair its first clients without asking. Each worker
    // makes its share; the answers are gathered into one OPEN_CHANNELS.
    const auto workers = static_cast<unsigned>(shards_.size());
    for (unsigned i = 0; i < workers; ++i) {
        const unsigned n = count / workers + (i < count % workers ? 1 : 0);
        if (n > 0) {
            ++it->second.initial_left;
            shards_.invoke_on(i, [id = s.id(), n](Shard& sh, io::Worker&) { sh.issue(id, n); });
        }
    }
}

void Agents::send_tokens(unsigned /*worker*/, uint64_t agent, std::vector<control::Token> tokens,
                         bool initial) {
    const auto it = agents_.find(agent);
    if (it == agents_.end() || !it->second.session->ready()) {
        return;
    }
    Agent& a = it->second;
    if (!initial) {
        if (!tokens.empty()) {
            a.session->send_tokens(tokens);
        }
        return;
    }
    a.initial.insert(a.initial.end(), tokens.begin(), tokens.end());
    if (a.initial_left > 0 && --a.initial_left == 0) {
        a.session->send_tokens(a.initial);
        a.initial.clear();
        a.initial.shrink_to_fit();
    }
}

void Agents::set_draining(AgentSession& s, bool draining) {
    // After ready()'s add_agent on every worker: posts to one worker keep
    // their order.
    shards_.invoke_on_all([id = s.id(), draining](Shard& sh, io::Worker& w) {
        sh.set_agent_draining(w, id, draining);
    });
}

void Agents::gone(AgentSession& s) {
    const uint64_t id = s.id();
    directory_.release(s.name(), id);
    // Drop what it served: unused tokens, idle channels, listeners of
    // services nobody else serves. Sessions already paired run on.
    shards_.invoke_on_all([id](Shard& sh, io::Worker& w) { sh.drop_agent(w, id); });
    // Replaced: the newer connection sends its CONFIG right after its
    // HELLO_ACK, so its services' listeners are held (clients wait) for at
    // least the handshake timeout instead of closing for those few ms.
    const bool replaced = replaced_.erase(id) != 0;
    listeners_.remove_agent(id, s.name(), stopping_, refused_.erase(id) == 0,
                            replaced ? 2 * handshake_timeout_ : std::chrono::milliseconds(0));
}

void Agents::finished(AgentSession& s) {
    const uint64_t id = s.id();
    const auto it = agents_.find(id);
    if (it == agents_.end()) {
        return;
    }
    leave_handshake(it->second, s);
    refused_.erase(id);  // gone() erases it only for sessions that were Ready
    replaced_.erase(id);
    // Not now: the session is inside one of its own methods.
    poller_.add_timer(std::chrono::milliseconds(0), [this, id] { agents_.erase(id); });
}

void Agents::outbound(AgentSession& s, const control::OutboundRequest& r) {
    if (!outbound_) {
        s.send_outbound_result({r.request_id, control::OutboundStatus::Disabled, 0, {}});
        return;
    }
    outbound_(s, r);
}

bool Agents::answer_outbound(uint64_t agent, const control::OutboundResult& r) {
    const auto it = agents_.find(agent);
    if (it == agents_.end() || !it->second.session || !it->second.session->ready()) {
        return false;
    }
    it->second.session->send_outbound_result(r);
    return true;
}

}  // namespace sp::relay
