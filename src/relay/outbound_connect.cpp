// SPDX-License-Identifier: Apache-2.0
#include "relay/outbound_connect.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"
#include "io/net.hpp"
#include "relay/metrics.hpp"
#include "relay/session_events.hpp"

namespace sp::relay {

using control::OutboundStatus;

struct OutboundConnects::Attempt {
    OutboundJob job;
    size_t next = 0;  // index in job.addresses of the next address to try
    UniqueFd fd;      // the connect in progress
    SocketAddress remote;
    uint64_t wait = 0;  // wait_fd id while connecting
    int last_error = ECONNREFUSED;
};

OutboundConnects::OutboundConnects(unsigned worker, uint64_t hash_key, NextSessionId next_id,
                                   AgentAlive alive)
    : worker_(worker), next_id_(std::move(next_id)), alive_(std::move(alive)), tokens_(hash_key) {}

OutboundConnects::~OutboundConnects() = default;

void OutboundConnects::start(io::Worker& w, OutboundJob job) {
    if (!alive_(job.agent)) {
        // It left while its name was being resolved: do not connect at all.
        if (job.report) {
            job.report({job.request, OutboundStatus::ConnectFailed, ECONNABORTED, {}, {}});
        }
        return;
    }
    const uint64_t id = next_++;
    auto a = std::make_unique<Attempt>();
    a->job = std::move(job);
    attempts_.emplace(id, std::move(a));
    try_next(w, id);
}

void OutboundConnects::try_next(io::Worker& w, uint64_t id) {
    const auto it = attempts_.find(id);
    if (it == attempts_.end()) {
        return;
    }
    Attempt& a = *it->second;
    while (a.next < a.job.addresses.size()) {
        a.remote = a.job.addresses[a.next++];
        a.fd = UniqueFd();
        const int rc = io::connect_tcp_nonblocking(a.remote, a.fd);
        if (rc == 0) {
            grant(w, id);
            return;
        }
        if (rc == -EINPROGRESS) {
            a.wait = w.wait_fd(a.fd.get(), POLLOUT, a.job.connect_timeout,
                               [this, id](io::Worker& wk, int res) { on_connected(wk, id, res); });
            return;
        }
        a.last_error = -rc;
    }
    const bool timed_out = a.last_error == ETIMEDOUT;
    finish(id, {a.job.request,
                timed_out ? OutboundStatus::Timeout : OutboundStatus::ConnectFailed,
                timed_out ? 0 : a.last_error,
                {},
                a.remote.to_string()});
}

void OutboundConnects::on_connected(io::Worker& w, uint64_t id, int res) {
    const auto it = attempts_.find(id);
    if (it == attempts_.end()) {
        return;
    }
    Attempt& a = *it->second;
    a.wait = 0;
    if (res == -ETIMEDOUT) {
        a.last_error = ETIMEDOUT;
    } else if (res < 0) {
        a.last_error = -res;
    } else if (const int err = io::socket_error(a.fd.get()); err != 0) {
        a.last_error = -err;
    } else {
        grant(w, id);
        return;
    }
    a.fd = UniqueFd();
    try_next(w, id);
}

void OutboundConnects::finish(uint64_t id, OutboundOutcome outcome) {
    const auto it = attempts_.find(id);
    if (it == attempts_.end()) {
        return;
    }
    auto report = std::move(it->second->job.report);
    attempts_.erase(it);
    if (report) {
        report(std::move(outcome));
    }
}

void OutboundConnects::grant(io::Worker& /*w*/, uint64_t id) {
    Attempt& a = *attempts_.at(id);
    if (!alive_(a.job.agent)) {
        // It left while we connected: nobody will dial for this socket.
        a.fd = UniqueFd();
        finish(
            id,
            {a.job.request, OutboundStatus::ConnectFailed, ECONNABORTED, {}, a.remote.to_string()});
        return;
    }
    auto token = make_token(worker_);
    if (!token) {
        a.fd = UniqueFd();
        finish(id,
               {a.job.request, OutboundStatus::ConnectFailed, EAGAIN, {}, a.remote.to_string()});
        return;
    }
    tokens_.add(*token, {id, Clock::now() + a.job.token_lifetime});
    granted_.emplace(id, Granted{a.job.agent, a.job.agent_name, a.job.destination, std::move(a.fd),
                                 a.remote, std::move(a.job.release)});
    finish(id, {a.job.request, OutboundStatus::Ok, 0, *token, a.remote.to_string()});
}

bool OutboundConnects::redeem(io::Worker& w, UniqueFd& fd, const control::Token& t, bool early,
                              uint32_t idle_timeout_s) {
    const auto grant = tokens_.redeem(t, Clock::now());
    if (!grant) {
        return false;
    }
    const auto it = granted_.find(grant->agent);
    if (it == granted_.end()) {
        return false;
    }
    Granted g = std::move(it->second);
    granted_.erase(it);
    UniqueFd channel = std::move(fd);
    const std::string resolved = g.remote.to_string();
    const auto local = io::local_address(g.fd.get());
    const auto refuse = [&](std::string_view why) {
        log::event(log::Ev::OutboundRejected,
                   {{"DESTINATION", g.destination},
                    {"REASON", "connect-failed"},
                    {"AGENT", g.agent_name},
                    {"RESOLVED_ADDR", resolved}},
                   fmt::format("outbound connection of agent \"{}\" to {} dropped: {}",
                               g.agent_name, g.destination, why));
        metrics_.add(metric::kOutboundRejections, {"connect-failed"});
        if (g.release) {
            g.release();
        }
    };
    if (early) {
        refuse("its data channel sent bytes before the binding header");
        return true;
    }
    const uint64_t sid = next_id_();
    auto header =
        control::encode_binding({sid, "", resolved, local ? local->to_string() : std::string()});
    // A fresh socket has an empty send buffer: the small header goes out
    // whole or the channel is broken.
    if (!header || ::send(channel.get(), header->data(), header->size(),
                          MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<ssize_t>(header->size())) {
        refuse("its data channel failed before the binding header was sent");
        return true;
    }
    log::event(log::Ev::OutboundOpen,
               {{"SESSION_ID", session_hex(sid)},
                {"DESTINATION", g.destination},
                {"RESOLVED_ADDR", resolved},
                {"AGENT", g.agent_name}},
               fmt::format("outbound session {} of agent \"{}\" to {} ({})", session_hex(sid),
                           g.agent_name, g.destination, resolved));
    metrics_.add(metric::kOutboundSessions, {g.agent_name});
    Live live{sid, g.agent_name, g.destination, resolved};
    // Up is the data channel to the partner: the internal application's
    // bytes (BYTES_UP as on the agent's side).
    const io::SessionId s = w.start_session(
        std::move(channel), std::move(g.fd),
        [this, live, release = std::move(g.release)](io::Worker&, io::SessionId id,
                                                     const io::SessionEnd& end) {
            live_.erase((uint64_t{id.slot} << 16) | id.gen);
            metrics_.add(metric::kOutboundBytes, {live.agent_name, "up"}, end.bytes_up);
            metrics_.add(metric::kOutboundBytes, {live.agent_name, "down"}, end.bytes_down);
            log::event(log::Ev::OutboundClose,
                       {{"SESSION_ID", session_hex(live.id)},
                        {"DESTINATION", live.destination},
                        {"RESOLVED_ADDR", live.resolved},
                        {"AGENT", live.agent_name},
                        {"BYTES_UP", std::to_string(end.bytes_up)},
                        {"BYTES_DOWN", std::to_string(end.bytes_down)},
                        {"DURATION_MS", std::to_string(end.duration.count())},
                        {"REASON", std::string(end.reason)}},
                       fmt::format("outbound session {} to {} closed ({}): {} bytes up, {} down",
                                   session_hex(live.id), live.destination, end.reason, end.bytes_up,
                                   end.bytes_down));
            if (release) {
                release();
            }
        },
        idle_timeout_s);
    if (w.session_progress(s)) {
        live_.emplace((uint64_t{s.slot} << 16) | s.gen, std::move(live));
    }
    return true;
}

void OutboundConnects::drop_agent(io::Worker& w, uint64_t agent) {
    std::vector<uint64_t> gone;
    for (const auto& [id, a] : attempts_) {
        if (a->job.agent == agent) {
            gone.push_back(id);
        }
    }
    for (const uint64_t id : gone) {
        Attempt& a = *attempts_.at(id);
        if (a.wait != 0) {
            w.cancel_wait(a.wait);
        }
        a.fd = UniqueFd();
        finish(
            id,
            {a.job.request, OutboundStatus::ConnectFailed, ECONNABORTED, {}, a.remote.to_string()});
    }
    // Their tokens stay in tokens_ until they expire; redeem() then finds
    // no grant and refuses the channel.
    for (auto it = granted_.begin(); it != granted_.end();) {
        if (it->second.agent == agent) {
            if (it->second.release) {
                it->second.release();
            }
            it = granted_.erase(it);
        } else {
            ++it;
        }
    }
}

void OutboundConnects::tick(Clock::time_point now) {
    tokens_.expire(now, [this](uint64_t key) { expired(key, "timeout"); });
}

void OutboundConnects::expired(uint64_t key, std::string_view reason) {
    const auto it = granted_.find(key);
    if (it == granted_.end()) {
        return;
    }
    Granted g = std::move(it->second);
    granted_.erase(it);
    metrics_.add(metric::kOutboundRejections, {reason});
    if (g.release) {
        g.release();
    }
    const int64_t held = reject_log_.allow(g.agent_name, log::LogLimiter::Clock::now());
    if (held < 0) {
        return;
    }
    log::event(log::Ev::OutboundRejected,
               {{"DESTINATION", g.destination},
                {"REASON", std::string(reason)},
                {"AGENT", g.agent_name},
                {"RESOLVED_ADDR", g.remote.to_string()},
                {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
               fmt::format("outbound connection of agent \"{}\" to {} closed: no data channel "
                           "presented its token in time{}",
                           g.agent_name, g.destination, log::LogLimiter::held_note(held)));
}

obs::MetricSet OutboundConnects::metrics() const {
    obs::MetricSet m = metrics_;
    std::unordered_map<std::string, uint64_t> open;
    for (const auto& [key, l] : live_) {
        ++open[l.agent_name];
    }
    for (const auto& [name, n] : open) {
        m.set(metric::kOutboundOpen, {name}, static_cast<double>(n));
    }
    return m;
}

}  // namespace sp::relay
