// SPDX-License-Identifier: Apache-2.0
#include "agent/backend_connect.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>

#include "agent/metrics.hpp"
#include "agent/proxy_header.hpp"
#include "agent/shard.hpp"
#include "io/net.hpp"

namespace sp::agent {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds kConnectTimeout = 5s;  // per backend attempt
constexpr std::chrono::seconds kFailHold = 5s;          // a refusing backend is skipped this long
constexpr std::chrono::milliseconds kResolveWait = 5s;  // for a name not resolved yet

}  // namespace

struct BackendConnector::Attempt {
    BoundChannel ch;
    Clock::time_point began = Clock::now();
    std::optional<BackendTarget> target;
    size_t tried = 0;
    UniqueFd backend;
    uint64_t wait = 0;                                // wait_fd on the backend connect
    uint64_t timer = 0;                               // while waiting for the resolver
    std::vector<std::pair<std::string, int>> failed;  // backends that refused, with errno
    std::vector<size_t> tried_backends;               // indexes, with affinity
    uint64_t generation = 0;                          // of the service table it was placed under
    bool pinned = false;                              // holds an affinity slot at the owner shard
    std::string group;       // with affinity: its group and client address,
    std::string client_key;  // as the owner's table knows them
};

BackendConnector::BackendConnector(ShardHost& host, unsigned index, AffinityTables& affinity)
    : host_(host), index_(index), affinity_(affinity) {}

BackendConnector::~BackendConnector() = default;

void BackendConnector::set_services(std::shared_ptr<const ServiceTable> table) {
    services_.clear();
    for (const auto& s : table->services) {
        services_.emplace(s.name,
                          Service{BackendSelector(s.listen, s.backend, kFailHold), s.proxy_protocol,
                                  std::chrono::seconds(s.affinity_s), s.affinity_group});
    }
    table_ = std::move(table);
}

void BackendConnector::mark_down(uint64_t gen, const std::string& service, size_t index) {
    if (!table_ || table_->generation != gen) {
        return;  // the mark is for a configuration since replaced
    }
    if (const auto it = services_.find(service); it != services_.end()) {
        it->second.selector.mark_failed(index, Clock::now());
    }
}

void BackendConnector::set_backend_health(uint64_t gen, const std::string& service, size_t index,
                                          bool up) {
    if (!table_ || table_->generation != gen) {
        return;
    }
    if (const auto it = services_.find(service); it != services_.end()) {
        it->second.selector.set_down(index, !up);
    }
}

void BackendConnector::place(io::Worker& w, BoundChannel ch) {
    const uint64_t id = next_++;
    auto a = std::make_unique<Attempt>();
    a->ch = std::move(ch);
    Attempt& at = *a;
    attempts_.emplace(id, std::move(a));
    at.generation = table_ ? table_->generation : 0;
    const auto svc = services_.find(at.ch.info.service);
    if (svc != services_.end() && svc->second.affinity.count() > 0) {
        ask_affinity(w, id, at, svc->second, false);
        return;
    }
    if (svc != services_.end()) {
        at.target = svc->second.selector.pick(at.ch.listen.port(), Clock::now());
    }
    if (!at.target) {
        give_up(w, id, at, EHOSTUNREACH);  // the listener port maps to no backend
        return;
    }
    at.tried = 1;
    connect(w, id, at);
}

void BackendConnector::at_owner(const std::string& client,
                                UniqueFunction<void(AffinityTables&)> fn) {
    const unsigned owner = balance::owner_shard(client, host_.shard_count());
    if (owner == index_) {
        fn(affinity_);
        return;
    }
    host_.on_shard(owner, [f = std::move(fn)](Shard& s, io::Worker&) mutable { f(s.affinity()); });
}

void BackendConnector::ask_affinity(io::Worker& /*w*/, uint64_t id, Attempt& a, const Service& svc,
                                    bool retry) {
    // The candidates as this shard sees them: health is broadcast to every
    // shard, so the owner decides on the same view.
    const auto now = Clock::now();
    std::vector<balance::Candidate> cands;
    const auto& backends = svc.selector.backends();
    cands.reserve(backends.size());
    for (size_t i = 0; i < backends.size(); ++i) {
        auto state = svc.selector.healthy(i, now) ? balance::Candidate::State::Up
                                                  : balance::Candidate::State::Down;
        if (std::find(a.tried_backends.begin(), a.tried_backends.end(), i) !=
            a.tried_backends.end()) {
            state = balance::Candidate::State::Excluded;
        }
        cands.push_back({backends[i].host, state});
    }
    if (!retry) {
        a.group = svc.group;
        a.client_key = balance::client_key(a.ch.info.client.ip());
    }
    a.pinned = false;  // until the answer: a retry gives its slot back first
    at_owner(a.client_key, [cands = std::move(cands), client = a.client_key, group = a.group,
                            hold = svc.affinity, retry, id, from = index_,
                            &host = host_](AffinityTables& t) mutable {
        auto& table = t.group(group);
        const auto now_owner = Clock::now();
        if (retry) {
            table.release(client, now_owner);
        }
        auto choice = table.acquire(client, cands, hold, now_owner);
        host.on_shard(from, [id, c = std::move(choice), group = std::move(group),
                             client = std::move(client)](Shard& s, io::Worker& wk) mutable {
            s.affinity_answer(wk, id, c, group, client);
        });
    });
}

void BackendConnector::affinity_answer(io::Worker& w, uint64_t id, const balance::Choice& choice,
                                       const std::string& group, const std::string& client) {
    const auto it = attempts_.find(id);
    if (it == attempts_.end()) {
        if (choice.ok()) {
            unpin(group, client);  // abandoned meanwhile (drain): give the slot back
        }
        return;
    }
    Attempt& a = *it->second;
    const auto svc = services_.find(a.ch.info.service);
    if (choice.ok()) {
        a.pinned = true;
    }
    // A reload meanwhile: the answer's index is into the old backend list,
    // and the service may be gone. The slot is given back (forget).
    if (svc == services_.end() || !table_ || table_->generation != a.generation) {
        give_up(w, id, a, EHOSTUNREACH);
        return;
    }
    if (choice.verdict == balance::Choice::Verdict::Refused) {
        // The client has sessions open on its host, which refused this
        // connection or is not a backend of this service: another host
        // could be the wrong FTP server. Refuse rather than move it.
        // Name the held backend as host:port for this listener, as the
        // other backend-failed lines do.
        std::string held = choice.pinned;
        const auto& list = svc->second.selector.backends();
        for (size_t i = 0; i < list.size(); ++i) {
            if (list[i].host == choice.pinned) {
                if (const auto t = svc->second.selector.at(i, a.ch.listen.port())) {
                    held = t->to_string();
                }
                break;
            }
        }
        log_affinity_refused(a.ch.info, held);
        metrics_.add(metrics::kConnectFailures, {a.ch.info.service, "affinity-held"});
        // The relay hears the error the held host gave, if it gave one.
        give_up(w, id, a, a.failed.empty() ? EHOSTUNREACH : a.failed.back().second, true);
        return;
    }
    if (choice.ok()) {
        a.target = svc->second.selector.at(choice.index, a.ch.listen.port());
    }
    if (!choice.ok() || !a.target) {
        give_up(w, id, a, a.failed.empty() ? EHOSTUNREACH : a.failed.back().second);
        return;
    }
    a.tried_backends.push_back(choice.index);
    a.tried = a.tried_backends.size();
    connect(w, id, a);
}

void BackendConnector::unpin(const std::string& group, const std::string& client) {
    at_owner(client,
             [group, client](AffinityTables& t) { t.group(group).release(client, Clock::now()); });
}

void BackendConnector::connect(io::Worker& w, uint64_t id, Attempt& a) {
    std::optional<SocketAddress> addr;
    int err = EHOSTUNREACH;
    if (auto ip = IpAddress::parse(a.target->host)) {
        addr = SocketAddress(*ip, a.target->port);
    } else if (const auto known = addresses_.find(a.target->host); known == addresses_.end()) {
        // Not resolved yet (a name first used, or a new config): the
        // resolver answers every shard; bounded by kResolveWait.
        host_.resolve(a.target->host);
        resolving_[a.target->host].push_back(id);
        a.timer = w.add_timer(kResolveWait, [this, id](io::Worker& wk) {
            const auto it = attempts_.find(id);
            if (it != attempts_.end() && it->second->timer != 0) {
                Attempt& at = *it->second;
                at.timer = 0;
                std::erase(resolving_[at.target->host], id);
                attempt_failed(wk, id, at, ETIMEDOUT);
            }
        });
        return;
    } else if (known->second) {
        addr = SocketAddress(*known->second, a.target->port);
    }
    if (addr) {
        UniqueFd fd;
        const int rc = io::connect_tcp_nonblocking(*addr, fd);
        if (rc == 0 || rc == -EINPROGRESS) {
            a.backend = std::move(fd);
            a.wait = w.wait_fd(a.backend.get(), POLLOUT, kConnectTimeout,
                               [this, id](io::Worker& wk, int r) { on_connected(wk, id, r); });
            return;
        }
        err = -rc;
    }
    attempt_failed(w, id, a, err);
}

void BackendConnector::set_address(io::Worker& w, const std::string& host,
                                   std::optional<IpAddress> ip) {
    addresses_[host] = ip;
    auto waiting = resolving_.extract(host);
    if (waiting.empty()) {
        return;
    }
    for (const uint64_t id : waiting.mapped()) {
        const auto it = attempts_.find(id);
        if (it == attempts_.end() || it->second->timer == 0) {
            continue;
        }
        Attempt& a = *it->second;
        w.cancel_timer(a.timer);
        a.timer = 0;
        connect(w, id, a);
    }
}

void BackendConnector::on_connected(io::Worker& w, uint64_t id, int res) {
    const auto it = attempts_.find(id);
    if (it == attempts_.end()) {
        return;
    }
    Attempt& a = *it->second;
    a.wait = 0;
    const int err = res < 0 ? -res : -io::socket_error(a.backend.get());
    if (err != 0) {
        a.backend.reset();
        attempt_failed(w, id, a, err);
        return;
    }
    start(w, id, a);
}

// The failed backend is skipped here and, by message, on every other shard;
// the session moves to the next backend of its service, each tried once.
void BackendConnector::attempt_failed(io::Worker& w, uint64_t id, Attempt& a, int err) {
    a.failed.emplace_back(a.target->to_string(), err);
    metrics_.add(metrics::kConnectFailures, {a.ch.info.service, errno_reason(err)});
    const auto svc = services_.find(a.ch.info.service);
    if (svc == services_.end()) {
        give_up(w, id, a, err);  // withdrawn by a reload meanwhile
        return;
    }
    if (table_->generation != a.generation) {
        // Placed under a configuration since replaced: its backend index
        // means nothing in this one, and an affinity slot is the old
        // group's. With affinity it gives up (forget returns the slot);
        // without, it takes the new list's next backend in rotation.
        if (a.pinned || a.tried >= svc->second.selector.size()) {
            give_up(w, id, a, err);
            return;
        }
        a.target = svc->second.selector.pick(a.ch.listen.port(), Clock::now());
        a.generation = table_->generation;
        ++a.tried;
        if (!a.target) {
            give_up(w, id, a, err);
            return;
        }
        connect(w, id, a);
        return;
    }
    svc->second.selector.mark_failed(a.target->index, Clock::now());
    host_.backend_down(table_->generation, a.ch.info.service, a.target->index);
    if (a.pinned) {
        ask_affinity(w, id, a, svc->second, true);
        return;
    }
    auto next = svc->second.selector.next_after(*a.target, a.ch.listen.port(), a.tried);
    if (!next) {
        give_up(w, id, a, err);
        return;
    }
    a.target = std::move(next);
    ++a.tried;
    connect(w, id, a);
}

void BackendConnector::give_up(io::Worker& w, uint64_t id, Attempt& a, int err, bool logged) {
    for (const auto& [addr, e] : a.failed) {
        log_backend_failed(a.ch.info, addr, e, {});
    }
    if (a.failed.empty() && !logged) {
        log_backend_failed(a.ch.info, {}, err, {});
        metrics_.add(metrics::kConnectFailures, {a.ch.info.service, errno_reason(err)});
    }
    const std::string last = a.failed.empty() ? std::string() : a.failed.back().first;
    // The wire carries a positive errno.
    host_.backend_failed(a.ch.link,
                         control::BackendFailed{a.ch.info.session_id, std::abs(err), last});
    forget(w, id);  // the relay sees the channel close and closes the client
}

void BackendConnector::start(io::Worker& w, uint64_t id, Attempt& a) {
    const auto svc = services_.find(a.ch.info.service);
    if (svc != services_.end() && svc->second.proxy != config::ProxyProtocol::None) {
        const auto header = svc->second.proxy == config::ProxyProtocol::V1
                                ? proxy_v1(a.ch.info.client, a.ch.listen)
                                : proxy_v2(a.ch.info.client, a.ch.listen);
        // Just connected: the send buffer is empty and takes it whole.
        if (::send(a.backend.get(), header.data(), header.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
            static_cast<ssize_t>(header.size())) {
            a.backend.reset();
            attempt_failed(w, id, a, EPIPE);
            return;
        }
    }
    a.ch.info.backend_addr = a.target->to_string();
    for (const auto& [addr, e] : a.failed) {
        log_backend_failed(a.ch.info, addr, e, a.ch.info.backend_addr);
    }
    log_session_open(a.ch.info);
    host_.session_count(+1);
    ++started_;
    const std::string& service = a.ch.info.service;
    metrics_.add(metrics::kSessions, {service});
    metrics_.observe(metrics::kConnectSeconds, {service},
                     std::chrono::duration<double>(Clock::now() - a.began).count());
    Live live{a.ch.info, a.target->index, {}};
    std::optional<Pin> pin;
    if (a.pinned) {
        pin = Pin{a.group, a.client_key};
        a.pinned = false;  // the session holds it now
    }
    // session-close repeats every field of session-open.
    live.sid = w.start_session(
        std::move(a.ch.fd), std::move(a.backend),
        [this, info = std::move(a.ch.info), pin = std::move(pin)](io::Worker&, io::SessionId sid,
                                                                  const io::SessionEnd& end) {
            log_session_close(info, end);
            ended(sid, info.service, end);
            host_.session_count(-1);
            if (pin) {
                unpin(pin->group, pin->client);
            }
        },
        0);
    // Listed only while the pump holds it: a session that ended inside
    // start_session has had its close callback already.
    if (w.session_progress(live.sid)) {
        live_.emplace(key(live.sid), std::move(live));
    }
    attempts_.erase(id);
}

void BackendConnector::ended(io::SessionId sid, const std::string& service,
                             const io::SessionEnd& end) {
    live_.erase(key(sid));
    closed_up_ += end.bytes_up;
    closed_down_ += end.bytes_down;
    metrics_.add(metrics::kBytes, {service, "up"}, end.bytes_up);
    metrics_.add(metrics::kBytes, {service, "down"}, end.bytes_down);
    metrics_.observe(metrics::kSessionSeconds, {service},
                     std::chrono::duration<double>(end.duration).count());
}

std::vector<SessionRow> BackendConnector::sessions(const io::Worker& w) const {
    std::vector<SessionRow> out;
    out.reserve(live_.size());
    for (const auto& [k, l] : live_) {
        const auto p = w.session_progress(l.sid);
        if (!p) {
            continue;  // closing: its close callback is on the way
        }
        out.push_back(SessionRow{l.info.session_id, l.info.service, l.info.client,
                                 l.info.backend_addr, l.info.relay_addr, p->start, p->bytes_up,
                                 p->bytes_down});
    }
    return out;
}

std::vector<BackendRow> BackendConnector::backends() const {
    std::vector<BackendRow> out;
    if (!table_) {
        return out;
    }
    const auto now = Clock::now();
    for (const auto& cfg : table_->services) {
        const auto svc = services_.find(cfg.name);
        if (svc == services_.end()) {
            continue;
        }
        const auto& sel = svc->second.selector;
        const size_t first = out.size();
        for (size_t i = 0; i < sel.size(); ++i) {
            // Port ranges are not checked (agent/health_checker.hpp).
            const bool checked =
                cfg.health_check_interval_ms != 0 && sel.backends()[i].ports.size() == 1;
            const char* check = !checked ? "off" : sel.down(i) ? "down" : "up";
            out.push_back(BackendRow{cfg.name, i, sel.backends()[i].to_string(),
                                     sel.healthy(i, now), check, 0});
        }
        for (const auto& [k, l] : live_) {
            if (l.info.service == cfg.name && l.backend < sel.size()) {
                ++out[first + l.backend].sessions;
            }
        }
    }
    return out;
}

SessionTotals BackendConnector::totals(const io::Worker& w) const {
    SessionTotals t{0, started_, closed_up_, closed_down_};
    for (const auto& [k, l] : live_) {
        if (const auto p = w.session_progress(l.sid)) {
            ++t.open;
            t.up_bytes += p->bytes_up;
            t.down_bytes += p->bytes_down;
        }
    }
    return t;
}

obs::MetricSet BackendConnector::snapshot_metrics(const io::Worker& w) const {
    obs::MetricSet m = metrics_;
    m.declare(metrics::kSessions);
    m.declare(metrics::kSessionsOpen);
    m.declare(metrics::kBytes);
    m.declare(metrics::kConnectFailures);
    m.declare(metrics::kConnectSeconds);
    m.declare(metrics::kSessionSeconds);
    if (table_) {
        for (const auto& s : table_->services) {
            m.set(metrics::kSessionsOpen, {s.name}, 0);
        }
    }
    std::map<std::string, uint64_t, std::less<>> open;
    for (const auto& [k, l] : live_) {
        const auto p = w.session_progress(l.sid);
        if (!p) {
            continue;
        }
        ++open[l.info.service];
        m.add(metrics::kBytes, {l.info.service, "up"}, p->bytes_up);
        m.add(metrics::kBytes, {l.info.service, "down"}, p->bytes_down);
    }
    for (const auto& [service, n] : open) {
        m.set(metrics::kSessionsOpen, {service}, static_cast<double>(n));
    }
    return m;
}

void BackendConnector::forget(io::Worker& w, uint64_t id) {
    const auto it = attempts_.find(id);
    if (it == attempts_.end()) {
        return;
    }
    Attempt& a = *it->second;
    if (a.wait != 0) {
        w.cancel_wait(a.wait);  // before the fd closes with the attempt
    }
    if (a.timer != 0) {
        w.cancel_timer(a.timer);
        std::erase(resolving_[a.target->host], id);
    }
    if (a.pinned) {
        unpin(a.group, a.client_key);
    }
    attempts_.erase(it);
}

void BackendConnector::close_all(io::Worker& w) {
    std::vector<uint64_t> ids;
    ids.reserve(attempts_.size());
    for (const auto& [id, a] : attempts_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        forget(w, id);
    }
}

}  // namespace sp::agent
