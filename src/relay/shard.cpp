// SPDX-License-Identifier: Apache-2.0
#include "relay/shard.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"
#include "relay/metrics.hpp"
#include "relay/session_events.hpp"

namespace sp::relay {

namespace {

using namespace std::chrono_literals;

double seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

}  // namespace

Shard::Shard(unsigned worker_index, io::Sharded<Shard>& peers, SessionIds ids, Admission& admission,
             ShardHooks hooks, ShardLimits limits, std::shared_ptr<const AgentRules> rules,
             uint64_t hash_key)
    : index_(worker_index),
      peers_(peers),
      ids_(ids),
      admission_(admission),
      hooks_(std::move(hooks)),
      limits_(limits),
      door_(*this, kMaxHandshaking / ids.stride,
            std::max<size_t>(16, kMaxHandshaking / ids.stride / kHandshakingPerAddressDivisor),
            std::move(rules)),
      channels_(worker_index, hash_key,
                [this](uint64_t agent, std::vector<control::Token> tokens) {
                    hooks_.send_tokens(index_, agent, std::move(tokens), false);
                }),
      outbound_(
          worker_index, hash_key ^ 0x6f7574626f756e64ULL,
          [this] { return ids_.base + next_session_++ * ids_.stride + index_; },
          [this](uint64_t agent) { return channels_.serves(agent); }) {
    channels_.set_token_lifetime(limits.token_lifetime);
}

void Shard::start(io::Worker& w) {
    w.add_timer(1s, [this](io::Worker& wk) { on_tick(wk); });
}

void Shard::on_tick(io::Worker& w) {
    const auto now = Clock::now();
    channels_.tick(now, [this](uint64_t agent) { return waiting_for(agent); });
    affinity_.expire(now);
    door_.sweep(w, now);
    outbound_.tick(now);
    w.add_timer(1s, [this](io::Worker& wk) { on_tick(wk); });
}

void Shard::add_listener(io::Worker& w, uint64_t key, UniqueFd fd, std::string service,
                         SocketAddress listen) {
    if (stopping_) {
        return;
    }
    listener_stats_[key] = ListenerStat{listen.to_string(), ListenerLoad{service, 0, 0, {}}};
    const uint64_t id = w.add_listener(
        std::move(fd),
        [this, key, service = std::move(service)](io::Worker& wk, UniqueFd client,
                                                  const SocketAddress& peer,
                                                  const SocketAddress& local) {
            on_accept(wk, key, service, std::move(client), peer, local);
        },
        [this, listen](io::Worker&, int err, bool paused) {
            on_accept_error(listen, err, paused);
        });
    listeners_[key] = id;
}

void Shard::remove_listener(io::Worker& w, uint64_t key) {
    if (const auto it = listeners_.find(key); it != listeners_.end()) {
        w.remove_listener(it->second);
        listeners_.erase(it);
    }
    listener_stats_.erase(key);
}

void Shard::remove_all_listeners(io::Worker& w) {
    stopping_ = true;
    for (const auto& [key, id] : listeners_) {
        w.remove_listener(id);
    }
    listeners_.clear();
    listener_stats_.clear();
    door_.close(w);
}

void Shard::set_service(io::Worker& w, std::shared_ptr<const ServicePolicy> policy) {
    auto& slot = services_[policy->name];
    slot = std::move(policy);
    reroute_waiting(w, *slot);
}

void Shard::reroute_waiting(io::Worker& w, const ServicePolicy& p) {
    if (p.agents.empty()) {
        return;
    }
    // Clients with affinity ask after the loop: an answer given at once may
    // pair one and erase it from pending_. `retry`: it holds a slot to give
    // back first.
    std::vector<std::tuple<uint64_t, SocketAddress, bool>> ask;
    for (auto& waiting : pending_) {
        if (waiting.service != p.name) {
            continue;
        }
        // Parked, or waiting on an agent the new policy no longer lists.
        const bool stale = waiting.agent != 0 && (std::find(p.agents.begin(), p.agents.end(),
                                                            waiting.agent) == p.agents.end() ||
                                                  !channels_.serves(waiting.agent));
        if (!waiting.parked && !stale) {
            continue;
        }
        waiting.parked = false;
        if (p.affinity_s > 0) {
            ask.emplace_back(waiting.id, waiting.peer, waiting.pinned);
            waiting.agent = 0;
            waiting.pinned = false;
            continue;
        }
        const uint64_t agent = choose_agent(p);
        waiting.agent = agent != 0 ? agent : p.agents.front();
        refill(w, waiting.agent);
    }
    for (const auto& [id, peer, retry] : ask) {
        ask_owner(w, p, id, peer, retry);
    }
}

void Shard::remove_service(io::Worker& w, const std::string& name) {
    services_.erase(name);
    // Clients still waiting for this service will never get a channel.
    for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->service == name) {
            w.cancel_timer(it->timer);
            admission_.release(it->peer.ip(), it->service);
            if (it->pinned) {
                unpin(balance::client_key(it->peer.ip()));
            }
            reject(it->peer, it->local, name, "no-agent", "service withdrawn while waiting",
                   it->listener);
            it = pending_.erase(it);
        } else {
            ++it;
        }
    }
}

void Shard::add_agent(io::Worker& w, uint64_t agent, std::string name, unsigned cap) {
    channels_.add_agent(agent, std::move(name), cap);
    // Clients parked because no agent of their service was here yet.
    std::vector<std::shared_ptr<const ServicePolicy>> services;
    for (const auto& waiting : pending_) {
        const auto svc = services_.find(waiting.service);
        if (waiting.parked && svc != services_.end() &&
            std::find(svc->second->agents.begin(), svc->second->agents.end(), agent) !=
                svc->second->agents.end() &&
            std::find(services.begin(), services.end(), svc->second) == services.end()) {
            services.push_back(svc->second);
        }
    }
    for (const auto& policy : services) {
        reroute_waiting(w, *policy);
    }
}

void Shard::drop_agent(io::Worker& w, uint64_t agent) {
    channels_.drop_agent(agent);
    outbound_.drop_agent(w, agent);
    draining_agents_.erase(agent);
    // Clients that were waiting on its channels ask another agent of their
    // service, if one is left (remove_service handles the case of none).
    move_waiting(w, agent);
}

void Shard::set_agent_draining(io::Worker& w, uint64_t agent, bool draining) {
    if (!draining) {
        draining_agents_.erase(agent);
        return;
    }
    if (channels_.serves(agent)) {
        draining_agents_.insert(agent);
        move_waiting(w, agent);
    }
}

bool Shard::eligible(const ServicePolicy& policy, uint64_t agent) const {
    if (!channels_.serves(agent)) {
        return false;
    }
    if (!draining_agents_.contains(agent)) {
        return true;
    }
    return std::none_of(policy.agents.begin(), policy.agents.end(), [&](uint64_t other) {
        return other != agent && channels_.serves(other) && !draining_agents_.contains(other);
    });
}

void Shard::move_waiting(io::Worker& w, uint64_t agent) {
    // Clients with affinity ask their owner again, after this loop: an
    // answer given at once may pair one and erase it from pending_.
    std::vector<std::tuple<uint64_t, SocketAddress, bool, std::shared_ptr<const ServicePolicy>>>
        ask;
    for (auto& p : pending_) {
        if (p.agent != agent) {
            continue;
        }
        const auto svc = services_.find(p.service);
        if (svc == services_.end()) {
            continue;
        }
        if (svc->second->affinity_s > 0) {
            ask.emplace_back(p.id, p.peer, p.pinned, svc->second);
            p.agent = 0;  // waits on none until the owner moves it
            p.pinned = false;
            continue;
        }
        // The agent is gone or draining, so no longer eligible.
        if (const uint64_t other = choose_agent(*svc->second); other != 0 && other != agent) {
            p.agent = other;
            refill(w, other);
        }
    }
    for (const auto& [id, peer, retry, policy] : ask) {
        ask_owner(w, *policy, id, peer, retry);
    }
}

uint64_t Shard::choose_agent(const ServicePolicy& policy) {
    const auto& agents = policy.agents;
    for (size_t i = 0; i < agents.size(); ++i) {
        const uint64_t agent = agents[(rotate_ + i) % agents.size()];
        if (eligible(policy, agent)) {
            rotate_ += i + 1;
            return agent;
        }
    }
    return 0;
}

void Shard::ask_owner(io::Worker& w, const ServicePolicy& policy, uint64_t pending_id,
                      const SocketAddress& peer, bool retry) {
    std::vector<balance::Candidate> cands;
    std::vector<uint64_t> ids;
    for (const uint64_t agent : policy.agents) {
        if (eligible(policy, agent)) {
            cands.push_back({std::string(channels_.name(agent)), balance::Candidate::State::Up});
            ids.push_back(agent);
        }
    }
    std::string client = balance::client_key(peer.ip());
    const auto hold = std::chrono::seconds(policy.affinity_s);
    // Runs on the owner: the agent chosen, 0 when none is eligible.
    auto decide = [cands = std::move(cands), ids = std::move(ids), client, hold,
                   retry](balance::StickyTable& table) {
        const auto now = Clock::now();
        if (retry) {
            table.release(client, now);
        }
        const auto c =
            table.acquire(client, cands, hold, now, balance::StickyTable::OpenClients::Move);
        return c.ok() ? ids[c.index] : uint64_t{0};
    };
    const unsigned owner = balance::owner_shard(client, static_cast<unsigned>(peers_.size()));
    if (owner == index_) {
        on_agent_chosen(w, pending_id, decide(affinity_), client);
        return;
    }
    peers_.invoke_on(owner, [decide = std::move(decide), client = std::move(client), pending_id,
                             from = index_](Shard& s, io::Worker&) mutable {
        const uint64_t agent = decide(s.affinity_);
        s.peers_.invoke_on(
            from, [pending_id, agent, client = std::move(client)](Shard& home, io::Worker& wk) {
                home.on_agent_chosen(wk, pending_id, agent, client);
            });
    });
}

void Shard::on_agent_chosen(io::Worker& w, uint64_t pending_id, uint64_t agent,
                            const std::string& client) {
    const auto it = std::find_if(pending_.begin(), pending_.end(),
                                 [&](const Pending& p) { return p.id == pending_id; });
    if (it == pending_.end()) {
        if (agent != 0) {
            unpin(client);  // timed out or withdrawn meanwhile
        }
        return;
    }
    const auto svc = services_.find(it->service);
    if (svc == services_.end()) {
        if (agent != 0) {
            unpin(client);  // remove_service ends the client itself
        }
        return;
    }
    const ServicePolicy& policy = *svc->second;
    if (agent != 0 && !eligible(policy, agent)) {
        // It left or began draining while the answer was on its way: the
        // owner moves the client (its slot is given back first).
        it->pinned = true;
        it->agent = 0;
        ask_owner(w, policy, pending_id, it->peer, true);
        return;
    }
    if (agent == 0) {
        // No agent of the service is here now (all gone, or not added on
        // this worker yet): parked until set_service or add_agent brings
        // one, bounded by pending_timeout_ms.
        it->parked = true;
        return;
    }
    it->agent = agent;
    it->pinned = true;
    while (auto ch = channels_.take(agent)) {
        if (bind(w, *svc->second, *ch, it->client, it->peer, it->local, it->listener, it->accepted,
                 true)) {
            w.cancel_timer(it->timer);
            pending_.erase(it);
            refill(w, agent);
            return;
        }
        channels_.dead(agent);
    }
    // No idle channel: it waits for this agent's next one, bounded by
    // pending_timeout_ms, rather than take another agent's (issue 14).
    refill(w, agent);
}

void Shard::unpin(const std::string& client) {
    const unsigned owner = balance::owner_shard(client, static_cast<unsigned>(peers_.size()));
    if (owner == index_) {
        affinity_.release(client, Clock::now());
        return;
    }
    peers_.invoke_on(
        owner, [client](Shard& s, io::Worker&) { s.affinity_.release(client, Clock::now()); });
}

void Shard::issue(uint64_t agent, unsigned count) {
    hooks_.send_tokens(index_, agent, channels_.issue(agent, count, Clock::now()), true);
}

void Shard::tls(UniqueFd fd, const SocketAddress& peer, Clock::time_point accepted) {
    hooks_.adopt_tls(std::move(fd), peer, accepted);
}

void Shard::channel(io::Worker& w, UniqueFd fd, const SocketAddress& peer, const control::Token& t,
                    bool early) {
    const unsigned owner = token_owner(t);
    if (owner == index_) {
        arrive(w, std::move(fd), peer, t, early);
        return;
    }
    if (owner >= peers_.size()) {
        channels_.reject_token(peer);  // no worker of ours made it
        return;
    }
    // The kernel spread the connection here; the token's worker verifies it
    // and keeps the channel, where its clients wait. One post, no lock.
    peers_.invoke_on(owner, [f = std::move(fd), peer, t, early](Shard& s, io::Worker& wk) mutable {
        s.arrive(wk, std::move(f), peer, t, early);
    });
}

void Shard::count_outbound_rejected(std::string_view reason) {
    metrics_.add(metric::kOutboundRejections, {reason});
}

void Shard::connect_outbound(io::Worker& w, OutboundJob job) {
    if (draining_ || stopping_) {
        if (job.report) {
            job.report({job.request, control::OutboundStatus::Limit, 0, {}, {}});
        }
        return;
    }
    outbound_.start(w, std::move(job));
}

void Shard::arrive(io::Worker& w, UniqueFd fd, const SocketAddress& peer, const control::Token& t,
                   bool early) {
    if (outbound_.redeem(w, fd, t, early, limits_.idle_timeout_s)) {
        return;
    }
    auto ch = channels_.redeem(std::move(fd), peer, t, early, Clock::now());
    if (!ch) {
        return;
    }
    const uint64_t agent = ch->agent;
    // The oldest waiting client whose service this agent serves gets it. A
    // channel that turns out dead is dropped; the client keeps waiting,
    // within its own deadline.
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        const auto svc = services_.find(it->service);
        if (svc == services_.end()) {
            continue;
        }
        const auto& agents = svc->second->agents;
        if (std::find(agents.begin(), agents.end(), agent) == agents.end() ||
            !eligible(*svc->second, agent)) {
            continue;
        }
        // With affinity a client waits for its own agent's channel: another
        // agent may place it on another backend host than its FTP control
        // connection (issue 14). It moves only if that agent goes or drains.
        if (svc->second->affinity_s > 0 && it->agent != agent) {
            continue;
        }
        if (bind(w, *svc->second, *ch, it->client, it->peer, it->local, it->listener, it->accepted,
                 it->pinned)) {
            w.cancel_timer(it->timer);
            pending_.erase(it);
        } else {
            channels_.dead(agent);
        }
        refill(w, agent);
        return;
    }
    channels_.keep(std::move(*ch));
    refill(w, agent);
}

void Shard::refill(io::Worker& w, uint64_t agent) {
    if (std::find(refill_.begin(), refill_.end(), agent) == refill_.end()) {
        refill_.push_back(agent);
    }
    if (!refill_posted_) {
        refill_posted_ = true;
        w.post([this](io::Worker&) { run_refills(); });
    }
}

void Shard::run_refills() {
    refill_posted_ = false;
    std::vector<uint64_t> agents;
    agents.swap(refill_);
    for (const uint64_t agent : agents) {
        channels_.replenish(agent, waiting_for(agent));
    }
}

size_t Shard::waiting_for(uint64_t agent) const {
    return static_cast<size_t>(std::count_if(pending_.begin(), pending_.end(),
                                             [&](const Pending& p) { return p.agent == agent; }));
}

void Shard::reject(const SocketAddress& peer, const SocketAddress& local,
                   const std::string& service, std::string_view reason, std::string_view message,
                   uint64_t listener) {
    // Counted before the log limiter: the metrics and `listeners` count
    // every refusal, the journal only a few per second.
    metrics_.add(metric::kClientRejections, {service, reason});
    if (const auto it = listener_stats_.find(listener); it != listener_stats_.end()) {
        auto& refusals = it->second.load.refusals;
        if (const auto r = refusals.find(reason); r != refusals.end()) {
            ++r->second;
        } else {
            refusals.emplace(std::string(reason), 1);
        }
    }
    const int64_t held = reject_log_.allow(peer.ip().to_string(), LogLimiter::Clock::now());
    if (held < 0) {
        return;
    }
    log::event(log::Ev::ClientRejected,
               {{"CLIENT_ADDR", peer.ip().to_string()},
                {"CLIENT_PORT", std::to_string(peer.port())},
                {"LISTEN_ADDR", local.to_string()},
                {"SERVICE", service},
                {"REASON", std::string(reason)},
                {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
               fmt::format("{}{}", message, LogLimiter::held_note(held)));
}

void Shard::on_accept(io::Worker& w, uint64_t listener, const std::string& service, UniqueFd client,
                      const SocketAddress& peer, const SocketAddress& local) {
    const auto accepted = Clock::now();
    metrics_.add(metric::kClientAccepts, {service});
    if (const auto st = listener_stats_.find(listener); st != listener_stats_.end()) {
        ++st->second.load.accepts;
    }
    if (draining_) {
        reject(peer, local, service, "draining", "relay draining: no new sessions", listener);
        return;  // closing `client` refuses it at once
    }
    const auto it = services_.find(service);
    if (it == services_.end() || (it->second->agents.empty() && !it->second->held)) {
        reject(peer, local, service, "no-agent", "no agent serves this service", listener);
        return;
    }
    const ServicePolicy& policy = *it->second;
    if (!client_allowed(peer.ip(), policy.allow_clients, policy.deny_clients)) {
        reject(peer, local, service, "denied", "client address not allowed", listener);
        return;
    }
    switch (admission_.admit(peer.ip(), service, policy.max_sessions, Admission::Clock::now())) {
        case Verdict::Admit:
            break;
        case Verdict::Limit:
            reject(peer, local, service, "limit", "session limit reached", listener);
            return;
        case Verdict::Rate:
            reject(peer, local, service, "rate", "too many new sessions from this address",
                   listener);
            return;
    }
    if (policy.agents.empty()) {
        // Held: its agent's control channel dropped a moment ago. The
        // client waits, bounded by pending_timeout_ms, for it to return.
        (void)enqueue(w, std::move(client), peer, local, service, 0, listener, accepted, true);
        return;
    }
    if (policy.affinity_s == 0 && try_pair(w, policy, client, peer, local, listener, accepted)) {
        return;
    }
    // With affinity the client waits until its owner shard names its agent.
    // Without, no idle channel: the client's bytes wait in its socket
    // buffer while an agent dials one for us. Its pool asks for tokens in
    // one batch for all the clients waiting, not one control round trip per
    // client.
    uint64_t agent = 0;
    if (policy.affinity_s == 0) {
        agent = choose_agent(policy);
        if (agent == 0) {
            agent = policy.agents.front();  // none eligible yet: wait on the first
        }
    }
    const uint64_t id =
        enqueue(w, std::move(client), peer, local, service, agent, listener, accepted, false);
    if (agent != 0) {
        refill(w, agent);
    } else {
        ask_owner(w, policy, id, peer, false);
    }
}

uint64_t Shard::enqueue(io::Worker& w, UniqueFd client, const SocketAddress& peer,
                        const SocketAddress& local, const std::string& service, uint64_t agent,
                        uint64_t listener, Clock::time_point accepted, bool parked) {
    const uint64_t id = next_pending_++;
    const uint64_t timer =
        w.add_timer(limits_.pending_timeout, [this, id](io::Worker&) { on_pending_timeout(id); });
    Pending p{id, std::move(client), peer, local, service, agent, timer, listener, accepted};
    p.parked = parked;
    pending_.push_back(std::move(p));
    return id;
}

void Shard::on_pending_timeout(uint64_t pending_id) {
    const auto it = std::find_if(pending_.begin(), pending_.end(),
                                 [&](const Pending& p) { return p.id == pending_id; });
    if (it == pending_.end()) {
        return;
    }
    admission_.release(it->peer.ip(), it->service);
    if (it->pinned) {
        unpin(balance::client_key(it->peer.ip()));
    }
    reject(it->peer, it->local, it->service, "pending-timeout",
           "no data channel within pending_timeout_ms", it->listener);
    pending_.erase(it);
}

bool Shard::try_pair(io::Worker& w, const ServicePolicy& policy, UniqueFd& client,
                     const SocketAddress& peer, const SocketAddress& local, uint64_t listener,
                     Clock::time_point accepted) {
    const auto& agents = policy.agents;
    if (agents.empty()) {
        return false;
    }
    const auto try_agent = [&](uint64_t agent) {
        while (auto ch = channels_.take(agent)) {
            if (bind(w, policy, *ch, client, peer, local, listener, accepted, false)) {
                refill(w, agent);
                return true;
            }
            channels_.dead(agent);
        }
        return false;
    };
    // Any agent with an idle channel, starting from the next in rotation
    // (with affinity the owner shard chooses: ask_owner).
    for (size_t i = 0; i < agents.size(); ++i) {
        const uint64_t agent = agents[(rotate_ + i) % agents.size()];
        if (eligible(policy, agent) && try_agent(agent)) {
            rotate_ += i + 1;
            return true;
        }
    }
    return false;
}

bool Shard::bind(io::Worker& w, const ServicePolicy& policy, Channels::Channel& ch,
                 UniqueFd& client, const SocketAddress& peer, const SocketAddress& local,
                 uint64_t listener, Clock::time_point accepted, bool pinned) {
    // base + n * workers + index: distinct across workers and never
    // repeated within 2^64 / workers sessions (an OR of a 32-bit counter
    // into the worker bits repeated after 2^32).
    const uint64_t sid = ids_.base + next_session_ * ids_.stride + index_;
    auto header = control::encode_binding({sid, policy.name, peer.to_string(), local.to_string()});
    if (!header) {
        return false;
    }
    // A fresh, idle socket has an empty send buffer, so the small header
    // goes out whole or the channel is broken.
    const ssize_t n =
        ::send(ch.fd.get(), header->data(), header->size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n != static_cast<ssize_t>(header->size())) {
        return false;
    }
    ++next_session_;
    channels_.paired(ch.agent);
    SessionInfo info{sid, policy.name, peer, local, std::move(ch.agent_name)};
    log_session_open(info);
    metrics_.add(metric::kSessions, {info.service, info.agent});
    metrics_.observe(metric::kSessionSetup, {info.service}, seconds(Clock::now() - accepted));
    Live live{info, listener};
    const io::SessionId id = w.start_session(
        std::move(client), std::move(ch.fd),
        [this, info = std::move(info), pinned](io::Worker&, io::SessionId sid_io,
                                               const io::SessionEnd& end) {
            admission_.release(info.client.ip(), info.service);
            if (pinned) {
                unpin(balance::client_key(info.client.ip()));
            }
            on_session_end(sid_io, info, end);
            log_session_close(info, end);
        },
        limits_.idle_timeout_s);
    // A session can end inside start_session (a socket that failed at
    // once): its on_close has run, so it must not be listed.
    if (w.session_progress(id)) {
        live_.emplace(id, std::move(live));
    }
    return true;
}

void Shard::on_session_end(io::SessionId id, const SessionInfo& info, const io::SessionEnd& end) {
    live_.erase(id);
    closed_up_ += end.bytes_up;
    closed_down_ += end.bytes_down;
    metrics_.add(metric::kSessionBytes, {info.service, info.agent, "up"}, end.bytes_up);
    metrics_.add(metric::kSessionBytes, {info.service, info.agent, "down"}, end.bytes_down);
    metrics_.observe(metric::kSessionDuration, {info.service},
                     std::chrono::duration<double>(end.duration).count());
}

ShardReport Shard::report(const io::Worker& w) const {
    ShardReport r;
    r.sessions = live_.size();
    r.up_bytes = closed_up_;
    r.down_bytes = closed_down_;
    for (const auto& [key, st] : listener_stats_) {
        r.listeners[st.address] = st.load;
    }
    for (const auto& [id, l] : live_) {
        if (const auto p = w.session_progress(id)) {
            r.up_bytes += p->bytes_up;
            r.down_bytes += p->bytes_down;
        }
        ++r.agent_sessions[l.info.agent];
        if (const auto st = listener_stats_.find(l.listener); st != listener_stats_.end()) {
            ++r.listeners[st->second.address].sessions;
        }
    }
    for (auto& p : channels_.pools()) {
        r.pools[p.agent] = PoolLoad{std::move(p.name), p.idle, p.target};
    }
    return r;
}

std::vector<SessionRow> Shard::sessions(const io::Worker& w, const SessionFilter& filter) const {
    std::vector<SessionRow> rows;
    const auto now = Clock::now();
    for (const auto& [id, l] : live_) {
        if (!filter.matches(l.info.service, l.info.client.ip())) {
            continue;
        }
        const auto p = w.session_progress(id);
        if (!p) {
            continue;
        }
        rows.push_back({l.info.id, l.info.client.to_string(), l.info.service, l.info.agent,
                        seconds(now - p->start), p->bytes_up, p->bytes_down});
    }
    return rows;
}

bool Shard::close_session(io::Worker& w, uint64_t id) {
    const auto it = std::find_if(live_.begin(), live_.end(),
                                 [id](const auto& kv) { return kv.second.info.id == id; });
    if (it == live_.end()) {
        return false;
    }
    // Copied first: on_close runs inside close_session and erases the entry.
    const io::SessionId sid = it->first;
    w.close_session(sid, "operator");
    return true;
}

obs::MetricSet Shard::metrics(const io::Worker& w) const {
    obs::MetricSet m = metrics_;
    // Every service and agent that had a session keeps an open-sessions
    // series, at 0 when none is open, so the series does not vanish.
    std::map<std::pair<std::string, std::string>, uint64_t> open;
    if (const auto f = metrics_.families().find(metric::kSessions.name);
        f != metrics_.families().end()) {
        for (const auto& [labels, series] : f->second.series) {
            if (labels.size() == 2) {
                open[{labels[0], labels[1]}] = 0;
            }
        }
    }
    for (const auto& [id, l] : live_) {
        ++open[{l.info.service, l.info.agent}];
        if (const auto p = w.session_progress(id)) {
            m.add(metric::kSessionBytes, {l.info.service, l.info.agent, "up"}, p->bytes_up);
            m.add(metric::kSessionBytes, {l.info.service, l.info.agent, "down"}, p->bytes_down);
        }
    }
    for (const auto& [key, n] : open) {
        m.set(metric::kSessionsOpen, {key.first, key.second}, static_cast<double>(n));
    }
    std::map<std::string, uint64_t>
        idle;  // two connections may share a name while one replaces the other
    for (const auto& p : channels_.pools()) {
        idle[p.name] += p.idle;
    }
    for (const auto& [name, n] : idle) {
        m.set(metric::kPoolIdle, {name}, static_cast<double>(n));
    }
    m.merge(outbound_.metrics());
    return m;
}

void Shard::on_accept_error(const SocketAddress& listen, int err, bool paused) {
    if (resource_log_.allow(listen.to_string(), LogLimiter::Clock::now()) < 0) {
        return;
    }
    log::event(log::Ev::ResourceLimit,
               {{"LISTEN_ADDR", listen.to_string()}, {"REASON", log::errno_reason(err)}},
               fmt::format("accept on {} failed: {}{}", listen.to_string(), std::strerror(-err),
                           paused ? "; accepting paused briefly" : ""));
}

}  // namespace sp::relay
