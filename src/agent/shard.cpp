// SPDX-License-Identifier: Apache-2.0
#include "agent/shard.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include <fmt/format.h>

#include "agent/metrics.hpp"
#include "agent/session_log.hpp"
#include "base/events.hpp"
#include "io/net.hpp"

namespace sp::agent {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds kDialTimeout = 10s;  // TCP connect to the relay
// Once a binding header has started, the rest is in the same segment or
// the next: a relay that stalls mid-header is not pairing a client.
constexpr std::chrono::milliseconds kHeaderTimeout = 10s;

}  // namespace

struct Shard::Channel {
    enum class Stage : uint8_t { Dialling, Waiting, Reading };
    Stage stage = Stage::Dialling;
    LinkId link{};
    std::string relay_name;
    UniqueFd fd;
    uint64_t wait = 0;       // the wait_fd in flight
    control::Token token{};  // Dialling only
    std::vector<uint8_t> buf;
};

// The checks run on one worker: each backend is checked once per interval,
// whatever the number of workers, and its verdict reaches them all.
Shard::Shard(unsigned index, ShardHost& host)
    : index_(index),
      connector_(host, index, affinity_),
      checker_(index == 0 ? std::make_unique<HealthChecker>(host, connector_.addresses())
                          : nullptr) {}

Shard::~Shard() = default;

void Shard::set_services(io::Worker& w, std::shared_ptr<const ServiceTable> table) {
    if (checker_) {
        checker_->set_services(w, table);
    }
    connector_.set_services(std::move(table));
}

void Shard::set_address(io::Worker& w, const std::string& host, std::optional<IpAddress> ip) {
    connector_.set_address(w, host, ip);
}

void Shard::mark_down(uint64_t gen, const std::string& service, size_t index) {
    if (checker_) {
        checker_->passive_failure(gen, service, index);
    }
    connector_.mark_down(gen, service, index);
}

void Shard::dial(io::Worker& w, const LinkRoute& route, const std::vector<control::Token>& tokens) {
    const auto now = Clock::now();
    auto [it, fresh] = links_.try_emplace(route.id, Link{route, ChannelBudget(route.limits, now)});
    Link& l = it->second;
    if (!fresh) {
        l.route = route;  // the relay may have moved (DNS), the pool changed by reload
        l.budget.set_limits(route.limits);
    }
    size_t refused = 0;
    auto why = ChannelBudget::Verdict::Dial;
    int dial_err = 0;
    for (const auto& t : tokens) {
        if (const auto v = l.budget.take(now); v != ChannelBudget::Verdict::Dial) {
            ++refused;
            why = v;
            continue;
        }
        UniqueFd fd;
        const int rc = io::connect_tcp_nonblocking(l.route.relay, fd);
        if (rc != 0 && rc != -EINPROGRESS) {
            l.budget.dropped();
            dial_err = rc;  // the relay re-issues on demand; the pool refills later
            continue;
        }
        auto c = std::make_unique<Channel>();
        c->link = route.id;
        c->relay_name = route.relay_name;
        c->token = t;
        c->fd = std::move(fd);
        const uint64_t id = next_channel_++;
        c->wait = w.wait_fd(c->fd.get(), POLLOUT, kDialTimeout,
                            [this, id](io::Worker& wk, int res) { on_dialled(wk, id, res); });
        channels_.emplace(id, std::move(c));
    }
    if (refused > 0) {
        limited_log(log::Ev::ResourceLimit, l.route.relay_name, to_string(why),
                    fmt::format("relay {} asked for {} more data channels than its {} allows "
                                "(worker {}); their tokens are dropped",
                                l.route.relay_name, refused,
                                why == ChannelBudget::Verdict::OverCap ? "cap" : "rate", index_));
    }
    if (dial_err != 0) {
        limited_log(log::Ev::ResourceLimit, l.route.relay_name, errno_reason(dial_err),
                    fmt::format("cannot dial a data channel to relay {}: {}", l.route.relay_name,
                                errno_reason(dial_err)));
    }
}

void Shard::on_dialled(io::Worker& w, uint64_t id, int res) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    Channel& c = *it->second;
    c.wait = 0;
    if (res < 0 || io::socket_error(c.fd.get()) != 0) {
        drop(w, id);
        return;
    }
    const auto hello = control::encode_channel_hello(c.token);
    // A new connection's send buffer is empty: 40 bytes go out whole.
    if (::send(c.fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
        static_cast<ssize_t>(hello.size())) {
        drop(w, id);
        return;
    }
    c.token = {};
    c.stage = Channel::Stage::Waiting;
    // Pooled: it may wait for a client for days, so no deadline and no timer.
    c.wait = w.wait_fd(c.fd.get(), POLLIN, io::kNoTimeout,
                       [this, id](io::Worker& wk, int r) { on_readable(wk, id, r); });
}

void Shard::on_readable(io::Worker& w, uint64_t id, int res) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    it->second->wait = 0;
    if (res < 0) {
        drop(w, id);  // header stalled (-ETIMEDOUT) or the worker stops
        return;
    }
    read_binding(w, id, *it->second);
}

void Shard::read_binding(io::Worker& w, uint64_t id, Channel& c) {
    const auto known = [this](std::string_view s) { return connector_.knows(s); };
    for (;;) {
        BindingVerdict v = judge_binding(c.buf, known);
        if (v.kind == BindingVerdict::Kind::Bound) {
            // Bound: the slot and its credit go back (a session is no waste),
            // and the channel leaves this object for its backend.
            if (const auto l = links_.find(c.link); l != links_.end()) {
                l->second.budget.bound();
            }
            BoundChannel b{c.link, std::move(c.fd),
                           SessionInfo{v.binding.session_id,
                                       std::move(v.binding.service),
                                       *v.client,
                                       std::move(v.binding.listen_addr),
                                       {},
                                       c.relay_name},
                           *v.listen};
            channels_.erase(id);
            connector_.place(w, std::move(b));
            return;
        }
        if (v.kind == BindingVerdict::Kind::Refused || v.need <= c.buf.size()) {
            limited_log(log::Ev::BackendFailed, c.relay_name, to_string(v.refusal), v.detail,
                        v.binding.session_id != 0 ? &v.binding : nullptr);
            drop(w, id);  // the relay sees the close and closes its client
            return;
        }
        // Exactly up to the header's end: client bytes stay in the socket
        // for the splice pump.
        uint8_t tmp[control::kBindingFixedSize + control::kMaxBindingPayload];
        const ssize_t n = ::recv(c.fd.get(), tmp, v.need - c.buf.size(), MSG_DONTWAIT);
        if (n > 0) {
            c.buf.insert(c.buf.end(), tmp, tmp + n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            // Every way out of this loop closes the channel or waits on the
            // ring for new bytes: a header can never make it spin.
            const bool started = !c.buf.empty();
            c.stage = started ? Channel::Stage::Reading : Channel::Stage::Waiting;
            c.wait = w.wait_fd(c.fd.get(), POLLIN, started ? kHeaderTimeout : io::kNoTimeout,
                               [this, id](io::Worker& wk, int r) { on_readable(wk, id, r); });
            return;
        }
        drop(w, id);  // EOF or an error: the relay closed an idle channel
        return;
    }
}

void Shard::drop(io::Worker& w, uint64_t id) {
    const auto it = channels_.find(id);
    if (it == channels_.end()) {
        return;
    }
    Channel& c = *it->second;
    if (c.wait != 0) {
        w.cancel_wait(c.wait);  // before the fd closes with the channel
    }
    if (const auto l = links_.find(c.link); l != links_.end()) {
        l->second.budget.dropped();
    }
    channels_.erase(it);
}

void Shard::drop_link(io::Worker& w, LinkId link) {
    std::vector<uint64_t> ids;
    for (const auto& [id, c] : channels_) {
        if (c->link == link) {
            ids.push_back(id);
        }
    }
    for (const uint64_t id : ids) {
        drop(w, id);
    }
    links_.erase(link);
}

void Shard::close_all(io::Worker& w) {
    std::vector<uint64_t> ids;
    ids.reserve(channels_.size());
    for (const auto& [id, c] : channels_) {
        ids.push_back(id);
    }
    for (const uint64_t id : ids) {
        drop(w, id);
    }
    connector_.close_all(w);
    if (checker_) {
        checker_->stop(w);
    }
}

std::map<LinkId, size_t> Shard::idle_by_link() const {
    std::map<LinkId, size_t> out;
    for (const auto& [link, l] : links_) {
        out[link] = 0;
    }
    for (const auto& [id, c] : channels_) {
        if (c->stage == Channel::Stage::Waiting) {
            ++out[c->link];
        }
    }
    return out;
}

obs::MetricSet Shard::snapshot_metrics(const io::Worker& w) const {
    obs::MetricSet m = connector_.snapshot_metrics(w);
    m.declare(metrics::kIdleChannels);
    if (index_ == 0) {
        // Every shard has the same verdicts (they are broadcast): one
        // reports them, so the scrape needs no merge rule for them.
        m.declare(metrics::kBackendUp);
        for (const auto& row : connector_.backends()) {
            m.set(metrics::kBackendUp, {row.service, row.address}, row.healthy ? 1 : 0);
        }
    }
    const auto idle = idle_by_link();
    for (const auto& [link, l] : links_) {
        const auto it = idle.find(link);
        // Summed: after a reload two links may have named the same relay.
        obs::MetricSet one;
        one.set(metrics::kIdleChannels, {l.route.relay_name},
                static_cast<double>(it == idle.end() ? 0 : it->second));
        m.merge(one);
    }
    return m;
}

void Shard::limited_log(log::Ev event, const std::string& relay, std::string_view reason,
                        const std::string& detail, const control::Binding* b) {
    const int64_t held =
        log_limit_.allow(relay + '|' + std::string(reason), log::LogLimiter::Clock::now());
    if (held < 0) {
        return;
    }
    namespace f = log::f;
    log::event(event,
               {{f::kRelayAddr, relay},
                {f::kReason, std::string(reason)},
                {f::kSessionId, b != nullptr ? fmt::format("{:016x}", b->session_id) : ""},
                {f::kService, b != nullptr ? b->service.substr(0, control::kMaxName) : ""},
                {f::kSuppressed, held > 0 ? std::to_string(held) : ""}},
               held > 0 ? fmt::format("{} ({} similar lines not logged)", detail, held) : detail);
}

}  // namespace sp::agent
