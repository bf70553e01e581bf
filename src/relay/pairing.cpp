// SPDX-License-Identifier: Apache-2.0
#include "relay/pairing.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"
#include "control/frame.hpp"

namespace sp::relay {

namespace {

using log::Level;

std::string session_hex(uint64_t id) {
    return fmt::format("{:016x}", id);
}

// A pooled channel may have died while idle (agent restarted, NAT entry
// expired). A peek tells: EAGAIN means open and silent, as it must be; EOF,
// an error or unexpected bytes mean it is unusable.
bool channel_alive(int fd) {
    char b = 0;
    const ssize_t n = ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

Pairing::Pairing(unsigned worker_index, uint64_t session_base, Admission& admission,
                 PairingHooks hooks, PairingLimits limits)
    : index_(worker_index),
      session_base_(session_base),
      admission_(admission),
      hooks_(std::move(hooks)),
      limits_(limits) {}

void Pairing::add_listener(io::Worker& w, uint64_t key, UniqueFd fd, std::string service,
                           SocketAddress listen) {
    const uint64_t id = w.add_listener(
        std::move(fd),
        [this, service = std::move(service)](
            io::Worker& wk, UniqueFd client, const SocketAddress& peer,
            const SocketAddress& local) { on_accept(wk, service, std::move(client), peer, local); },
        [this, listen](io::Worker& wk, int err, bool paused) {
            on_accept_error(wk, listen, err, paused);
        });
    listeners_[key] = id;
}

void Pairing::remove_listener(io::Worker& w, uint64_t key) {
    if (const auto it = listeners_.find(key); it != listeners_.end()) {
        w.remove_listener(it->second);
        listeners_.erase(it);
    }
}

void Pairing::remove_all_listeners(io::Worker& w) {
    for (const auto& [key, id] : listeners_) {
        w.remove_listener(id);
    }
    listeners_.clear();
}

void Pairing::set_service(std::shared_ptr<const ServicePolicy> policy) {
    services_[policy->name] = std::move(policy);
}

void Pairing::remove_service(io::Worker& w, const std::string& name) {
    services_.erase(name);
    // Clients still waiting for this service will never get a channel.
    for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->service == name) {
            w.cancel_timer(it->timer);
            reject(it->peer, it->local, name, "no-agent", "service withdrawn while waiting");
            it = pending_.erase(it);
        } else {
            ++it;
        }
    }
}

void Pairing::add_channel(io::Worker& w, uint64_t agent, std::string agent_name, UniqueFd fd,
                          size_t max_idle) {
    // The oldest waiting client whose service this agent serves gets it.
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        const auto svc = services_.find(it->service);
        if (svc == services_.end()) {
            continue;
        }
        const auto& agents = svc->second->agents;
        if (std::find(agents.begin(), agents.end(), agent) == agents.end()) {
            continue;
        }
        idle_[agent].push_front({std::move(fd), std::move(agent_name)});
        Pending p = std::move(*it);
        pending_.erase(it);
        w.cancel_timer(p.timer);
        if (!try_pair(w, *svc->second, p.client, p.peer, p.local)) {
            // The channel was dead: keep waiting for another one.
            hooks_.need_channel(index_, p.service);
            pending_.push_front(std::move(p));
            pending_.front().timer = w.add_timer(
                limits_.pending_timeout,
                [this, id = pending_.front().id](io::Worker& wk) { on_pending_timeout(wk, id); });
        }
        return;
    }
    auto& q = idle_[agent];
    if (q.size() < max_idle) {
        q.push_back({std::move(fd), std::move(agent_name)});
    }
}

void Pairing::drop_agent(uint64_t agent) {
    idle_.erase(agent);
}

size_t Pairing::idle_channels() const noexcept {
    size_t n = 0;
    for (const auto& [agent, q] : idle_) {
        n += q.size();
    }
    return n;
}

void Pairing::reject(const SocketAddress& peer, const SocketAddress& local,
                     const std::string& service, std::string_view reason,
                     std::string_view message) {
    const int64_t held = reject_log_.allow(peer.ip().to_string(), LogLimiter::Clock::now());
    if (held < 0) {
        return;
    }
    log::event(Level::Warn, "client-rejected",
               {{"CLIENT_ADDR", peer.ip().to_string()},
                {"CLIENT_PORT", std::to_string(peer.port())},
                {"LISTEN_ADDR", local.to_string()},
                {"SERVICE", service},
                {"REASON", std::string(reason)},
                {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
               fmt::format("{}{}", message, LogLimiter::held_note(held)));
}

void Pairing::on_accept(io::Worker& w, const std::string& service, UniqueFd client,
                        const SocketAddress& peer, const SocketAddress& local) {
    const auto it = services_.find(service);
    if (it == services_.end() || it->second->agents.empty()) {
        reject(peer, local, service, "no-agent", "no agent serves this service");
        return;  // closing `client` refuses it at once
    }
    const ServicePolicy& policy = *it->second;
    if (!client_allowed(peer.ip(), policy.allow_clients, policy.deny_clients)) {
        reject(peer, local, service, "denied", "client address not allowed");
        return;
    }
    switch (admission_.admit(peer.ip(), service, policy.max_sessions, Admission::Clock::now())) {
        case Verdict::Admit:
            break;
        case Verdict::Limit:
            reject(peer, local, service, "limit", "session limit reached");
            return;
        case Verdict::Rate:
            reject(peer, local, service, "rate", "too many new sessions from this address");
            return;
    }
    if (try_pair(w, policy, client, peer, local)) {
        return;
    }
    // No idle channel: the client's bytes wait in its socket buffer while an
    // agent dials one for us.
    const uint64_t id = next_pending_++;
    const uint64_t timer = w.add_timer(limits_.pending_timeout,
                                       [this, id](io::Worker& wk) { on_pending_timeout(wk, id); });
    pending_.push_back({id, std::move(client), peer, local, service, timer});
    hooks_.need_channel(index_, service);
}

void Pairing::on_pending_timeout(io::Worker& /*w*/, uint64_t pending_id) {
    const auto it = std::find_if(pending_.begin(), pending_.end(),
                                 [&](const Pending& p) { return p.id == pending_id; });
    if (it == pending_.end()) {
        return;
    }
    admission_.release(it->peer.ip(), it->service);
    reject(it->peer, it->local, it->service, "pending-timeout",
           "no data channel within pending_timeout_ms");
    pending_.erase(it);
}

bool Pairing::try_pair(io::Worker& w, const ServicePolicy& policy, UniqueFd& client,
                       const SocketAddress& peer, const SocketAddress& local) {
    const auto& agents = policy.agents;
    if (agents.empty()) {
        return false;
    }
    // With affinity, a client IP always tries the same agent first (its
    // backend choice is sticky there); otherwise rotate across agents.
    size_t start = rotate_++;
    if (policy.affinity_s > 0) {
        start = std::hash<std::string>{}(peer.ip().unmapped().to_string());
    }
    for (size_t i = 0; i < agents.size(); ++i) {
        const uint64_t agent = agents[(start + i) % agents.size()];
        auto q = idle_.find(agent);
        while (q != idle_.end() && !q->second.empty()) {
            Idle ch = std::move(q->second.front());
            q->second.pop_front();
            hooks_.channel_used(index_, agent);
            if (!channel_alive(ch.fd.get())) {
                continue;
            }
            const uint64_t sid = session_base_ | next_session_++;
            auto header =
                control::encode_binding({sid, policy.name, peer.to_string(), local.to_string()});
            if (!header) {
                return false;
            }
            // A fresh, idle socket has an empty send buffer, so the small
            // header goes out whole or the channel is broken.
            const ssize_t n =
                ::send(ch.fd.get(), header->data(), header->size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n != static_cast<ssize_t>(header->size())) {
                continue;
            }
            log::event(Level::Info, "session-open",
                       {{"SESSION_ID", session_hex(sid)},
                        {"SERVICE", policy.name},
                        {"CLIENT_ADDR", peer.ip().to_string()},
                        {"CLIENT_PORT", std::to_string(peer.port())},
                        {"LISTEN_ADDR", local.to_string()},
                        {"AGENT", ch.agent_name}},
                       fmt::format("session {} from {} to {}", session_hex(sid), peer.to_string(),
                                   policy.name));
            w.start_session(
                std::move(client), std::move(ch.fd),
                [this, sid, service = policy.name, peer, local, agent_name = ch.agent_name](
                    io::Worker&, io::SessionId, const io::SessionEnd& end) {
                    admission_.release(peer.ip(), service);
                    log::event(
                        Level::Info, "session-close",
                        {{"SESSION_ID", session_hex(sid)},
                         {"SERVICE", service},
                         {"CLIENT_ADDR", peer.ip().to_string()},
                         {"CLIENT_PORT", std::to_string(peer.port())},
                         {"LISTEN_ADDR", local.to_string()},
                         {"AGENT", agent_name},
                         {"BYTES_UP", std::to_string(end.bytes_up)},
                         {"BYTES_DOWN", std::to_string(end.bytes_down)},
                         {"DURATION_MS", std::to_string(end.duration.count())},
                         {"REASON", std::string(end.reason)}},
                        fmt::format("session {} closed ({}): {} bytes up, {} down",
                                    session_hex(sid), end.reason, end.bytes_up, end.bytes_down));
                },
                limits_.idle_timeout_s);
            return true;
        }
    }
    return false;
}

void Pairing::on_accept_error(io::Worker& /*w*/, const SocketAddress& listen, int err,
                              bool paused) {
    if (resource_log_.allow(listen.to_string(), LogLimiter::Clock::now()) < 0) {
        return;
    }
    log::event(Level::Warn, "resource-limit",
               {{"LISTEN_ADDR", listen.to_string()}, {"REASON", std::strerror(-err)}},
               fmt::format("accept on {} failed: {}{}", listen.to_string(), std::strerror(-err),
                           paused ? "; accepting paused briefly" : ""));
}

}  // namespace sp::relay
