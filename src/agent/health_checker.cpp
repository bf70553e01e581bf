// SPDX-License-Identifier: Apache-2.0
#include "agent/health_checker.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "agent/backend.hpp"
#include "base/events.hpp"
#include "io/net.hpp"

namespace sp::agent {

using namespace std::chrono_literals;
namespace f = log::f;

HealthChecker::HealthChecker(ShardHost& host, const ResolvedNames& addresses)
    : host_(host), addresses_(addresses) {}

HealthChecker::~HealthChecker() = default;

void HealthChecker::set_services(io::Worker& w, std::shared_ptr<const ServiceTable> table) {
    if (stopped_) {
        return;
    }
    cancel_all(w);
    std::vector<Target> old = std::move(targets_);
    targets_.clear();
    table_ = std::move(table);
    for (const auto& s : table_->services) {
        if (s.health_check_interval_ms == 0) {
            continue;
        }
        for (size_t idx = 0; idx < s.backend.size(); ++idx) {
            const auto& b = s.backend[idx];
            if (b.ports.size() > 1) {
                // A range's ports (FTP passive ports) listen only while a
                // transfer waits: a check would find them closed, or take
                // the connection a client's transfer is waiting for.
                continue;
            }
            const std::string address = BackendTarget{b.host, b.ports.first, idx}.to_string();
            const auto same = std::find_if(targets_.begin(), targets_.end(), [&](const Target& t) {
                return t.service == s.name && t.address == address;
            });
            if (same != targets_.end()) {
                same->indexes.push_back(idx);  // one check serves both entries
                continue;
            }
            Target t{.service = s.name,
                     .host = b.host,
                     .port = b.ports.first,
                     .address = address,
                     .indexes = {idx},
                     .state = HealthState(s.health_check_rise, s.health_check_fall),
                     .interval = std::chrono::milliseconds(s.health_check_interval_ms),
                     .timeout = std::chrono::milliseconds(s.health_check_timeout_ms),
                     .rise = s.health_check_rise,
                     .fall = s.health_check_fall,
                     .timer = 0,
                     .wait = 0,
                     .fd = {},
                     .started = {}};
            // A reload that keeps the address and its rules keeps its state.
            const auto prev = std::find_if(old.begin(), old.end(), [&](const Target& o) {
                return o.service == s.name && o.address == address && o.rise == t.rise &&
                       o.fall == t.fall;
            });
            if (prev != old.end()) {
                t.state = prev->state;
            }
            targets_.push_back(std::move(t));
        }
    }
    started_ = false;
}

void HealthChecker::start(io::Worker& w) {
    if (stopped_ || started_) {
        return;
    }
    started_ = true;
    for (size_t i = 0; i < targets_.size(); ++i) {
        if (!targets_[i].state.up()) {
            announce(targets_[i], false);  // the new selectors start all up
        }
        // Spread over the first interval rather than all at once.
        const auto n = static_cast<int64_t>(targets_.size());
        schedule(w, i, targets_[i].interval * static_cast<int64_t>(i) / n);
    }
}

void HealthChecker::passive_failure(uint64_t gen, const std::string& service, size_t index) {
    if (!started_ || stopped_ || !table_ || table_->generation != gen) {
        return;
    }
    for (auto& t : targets_) {
        if (t.service == service &&
            std::find(t.indexes.begin(), t.indexes.end(), index) != t.indexes.end()) {
            apply(t, HealthEvent::PassiveFailure, 0);
            return;
        }
    }
}

void HealthChecker::stop(io::Worker& w) {
    stopped_ = true;
    cancel_all(w);
    targets_.clear();
}

void HealthChecker::schedule(io::Worker& w, size_t i, std::chrono::milliseconds delay) {
    targets_[i].timer = w.add_timer(delay, [this, i](io::Worker& wk) {
        targets_[i].timer = 0;
        run_check(wk, i);
    });
}

void HealthChecker::run_check(io::Worker& w, size_t i) {
    Target& t = targets_[i];
    t.started = Clock::now();
    std::optional<IpAddress> ip;
    if (auto lit = IpAddress::parse(t.host)) {
        ip = *lit;
    } else {
        const auto known = addresses_.find(t.host);
        if (known == addresses_.end()) {
            // Not resolved yet: App resolves every backend name at start,
            // on reload and every minute; check once the answer is here.
            schedule(w, i, t.interval);
            return;
        }
        if (!known->second) {
            finish(w, i, EHOSTUNREACH);  // as a session's connect would fail
            return;
        }
        ip = known->second;
    }
    UniqueFd fd;
    const int rc = io::connect_tcp_nonblocking(SocketAddress(*ip, t.port), fd);
    if (rc == 0) {
        finish(w, i, 0);
        return;
    }
    if (rc != -EINPROGRESS) {
        finish(w, i, -rc);
        return;
    }
    t.fd = std::move(fd);
    t.wait = w.wait_fd(t.fd.get(), POLLOUT, t.timeout,
                       [this, i](io::Worker& wk, int res) { on_connected(wk, i, res); });
}

void HealthChecker::on_connected(io::Worker& w, size_t i, int res) {
    Target& t = targets_[i];
    t.wait = 0;
    if (res == -ECANCELED) {
        t.fd.reset();  // the worker stops
        return;
    }
    const int err = res < 0 ? -res : -io::socket_error(t.fd.get());
    t.fd.reset();  // a check only connects; closing ends it
    finish(w, i, err);
}

void HealthChecker::finish(io::Worker& w, size_t i, int err) {
    Target& t = targets_[i];
    apply(t, err == 0 ? HealthEvent::CheckOk : HealthEvent::CheckFailed, err);
    const auto spent =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t.started);
    schedule(w, i, std::max<std::chrono::milliseconds>(1ms, t.interval - spent));
}

void HealthChecker::apply(Target& t, HealthEvent e, int err) {
    const HealthAction a = t.state.on(e);
    if (a == HealthAction::None) {
        return;
    }
    const bool up = a == HealthAction::BecameUp;
    const std::string checks = std::to_string(t.state.streak());
    if (up) {
        log::event(log::Ev::BackendUp,
                   {{f::kService, t.service}, {f::kBackendAddr, t.address}, {f::kChecks, checks}},
                   fmt::format("backend {} of service {} is up after {} successful check{}; it "
                               "takes new sessions again",
                               t.address, t.service, checks, t.state.streak() == 1 ? "" : "s"));
    } else {
        // A session's own backend-failed line names its errno.
        const std::string reason =
            e == HealthEvent::PassiveFailure ? "session-failed" : log::errno_reason(err);
        log::event(
            log::Ev::BackendDown,
            {{f::kService, t.service},
             {f::kBackendAddr, t.address},
             {f::kReason, reason},
             {f::kChecks, checks}},
            fmt::format("backend {} of service {} is down after {} failure{} in a row ({}); "
                        "new sessions go to its other backends",
                        t.address, t.service, checks, t.state.streak() == 1 ? "" : "s", reason));
    }
    announce(t, up);
}

void HealthChecker::announce(const Target& t, bool up) {
    for (const size_t idx : t.indexes) {
        host_.backend_health(table_->generation, t.service, idx, up);
    }
}

void HealthChecker::cancel_all(io::Worker& w) {
    for (auto& t : targets_) {
        if (t.timer != 0) {
            w.cancel_timer(t.timer);
            t.timer = 0;
        }
        if (t.wait != 0) {
            w.cancel_wait(t.wait);  // before the fd closes
            t.wait = 0;
        }
        t.fd.reset();
    }
}

}  // namespace sp::agent
