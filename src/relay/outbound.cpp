// SPDX-License-Identifier: Apache-2.0
#include "relay/outbound.hpp"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/event.hpp"
#include "base/events.hpp"
#include "relay/shard.hpp"

namespace sp::relay {

using control::OutboundStatus;

namespace {

// A bound on how many addresses of one name are tried, each with the full
// connect timeout, so an agent's wait stays bounded.
constexpr size_t kMaxAddresses = 8;

}  // namespace

Result<std::unique_ptr<Outbound>> Outbound::create(const config::RelayConfig& cfg,
                                                   io::Sharded<Shard>& shards, Hooks hooks) {
    auto o = std::make_unique<Outbound>(Private{}, cfg, shards, std::move(hooks));
    Outbound* raw = o.get();
    auto r = NameResolver::create([raw](NameResolver::Answer a) {
        // Resolver thread: hand the answer over, never block here.
        raw->hooks_.post([raw, a = std::move(a)]() mutable { raw->on_resolved(std::move(a)); });
    });
    if (!r) {
        return Unexpected(r.error());
    }
    o->resolver_ = std::move(*r);
    return o;
}

Outbound::Outbound(const Private& /*key*/, const config::RelayConfig& cfg,
                   io::Sharded<Shard>& shards, Hooks hooks)
    : cfg_(cfg), shards_(shards), hooks_(std::move(hooks)) {}

Outbound::~Outbound() {
    resolver_.reset();  // no answer is delivered after this
}

void Outbound::request(uint64_t agent, const std::string& agent_name,
                       const control::OutboundRequest& r) {
    const auto target = parse_target(r.host, r.port);
    if (!target) {
        // Not echoed: it may hold bytes no log should carry.
        refuse(agent, agent_name, r.request_id, fmt::format("(invalid, {} bytes)", r.host.size()),
               OutboundStatus::Denied, 0, "", "not a DNS name or IP address, or port 0", false);
        return;
    }
    const auto status = outbound_precheck(cfg_, *target, agent_name, counts_);
    if (status != OutboundStatus::Ok) {
        const char* why = status == OutboundStatus::Disabled ? "[outbound] allow is empty"
                          : status == OutboundStatus::Limit
                              ? "max_outbound_sessions or max_outbound_sessions_per_agent reached"
                              : "not in [outbound] allow";
        refuse(agent, agent_name, r.request_id, target->destination(), status, 0, "", why, false);
        return;
    }
    if (target->ip) {
        dispatch(agent, agent_name, r.request_id, *target, allowed_addresses(cfg_, *target, {}));
        return;
    }
    const uint64_t id = next_++;
    if (!resolver_->request(id, target->host)) {
        refuse(agent, agent_name, r.request_id, target->destination(),
               OutboundStatus::ResolveFailed, 0, "", "too many names being resolved", true);
        return;
    }
    waiting_.emplace(id, Waiting{agent, agent_name, r.request_id, *target});
}

void Outbound::on_resolved(NameResolver::Answer a) {
    const auto it = waiting_.find(a.id);
    if (it == waiting_.end()) {
        return;
    }
    const Waiting w = std::move(it->second);
    waiting_.erase(it);
    if (!a.error.empty()) {
        refuse(w.agent, w.agent_name, w.request_id, w.target.destination(),
               OutboundStatus::ResolveFailed, 0, "",
               fmt::format("{} did not resolve: {}", w.target.host, a.error), true);
        return;
    }
    auto addresses = allowed_addresses(cfg_, w.target, a.ips);
    if (addresses.empty()) {
        const std::string first = SocketAddress(a.ips.front(), w.target.port).to_string();
        refuse(w.agent, w.agent_name, w.request_id, w.target.destination(), OutboundStatus::Denied,
               0, first,
               fmt::format("{} resolves only to addresses not in [outbound] allow ({}, ...)",
                           w.target.host, first),
               true);
        return;
    }
    dispatch(w.agent, w.agent_name, w.request_id, w.target, std::move(addresses));
}

void Outbound::dispatch(uint64_t agent, const std::string& agent_name, uint32_t request_id,
                        const OutboundTarget& target, std::vector<SocketAddress> addresses) {
    if (addresses.empty()) {  // a literal allowed by precheck always stays allowed
        refuse(agent, agent_name, request_id, target.destination(), OutboundStatus::Denied, 0, "",
               "not in [outbound] allow", true);
        return;
    }
    if (addresses.size() > kMaxAddresses) {
        addresses.resize(kMaxAddresses);
    }
    OutboundJob job;
    job.request = request_id;
    job.agent = agent;
    job.agent_name = agent_name;
    job.destination = target.destination();
    job.addresses = std::move(addresses);
    job.connect_timeout = std::chrono::milliseconds(cfg_.outbound_connect_timeout_ms);
    // As for pool tokens (control-protocol.md 6.3): 2 x handshake_timeout_ms.
    job.token_lifetime = 2 * std::chrono::milliseconds(cfg_.limits.handshake_timeout_ms);
    // These run on the worker: they touch nothing of this object there, only
    // a copy of the post hook; the posted functions run on this thread.
    job.report = [post = hooks_.post, self = this, agent, agent_name, request_id,
                  destination = job.destination](OutboundOutcome o) {
        post([self, agent, agent_name, request_id, destination, o = std::move(o)]() mutable {
            self->on_outcome(agent, agent_name, request_id, destination, std::move(o));
        });
    };
    job.release = [post = hooks_.post, self = this, agent_name] {
        post([self, agent_name] { self->counts_.release(agent_name); });
    };
    const unsigned worker = next_worker_++ % static_cast<unsigned>(shards_.size());
    shards_.invoke_on(worker, [job = std::move(job)](Shard& s, io::Worker& w) mutable {
        s.connect_outbound(w, std::move(job));
    });
}

void Outbound::on_outcome(uint64_t agent, const std::string& agent_name, uint32_t request_id,
                          const std::string& destination, OutboundOutcome o) {
    if (o.status == OutboundStatus::Ok) {
        // Not Ready any more: the worker voids the token when it drops the
        // agent (gone() posted that before this ran), closing the socket.
        (void)hooks_.answer(agent, {request_id, OutboundStatus::Ok, 0, o.token});
        return;
    }
    std::string why;
    if (o.status == OutboundStatus::Timeout) {
        why = fmt::format("connect to {} timed out (connect_timeout_ms)", o.resolved);
    } else if (o.status == OutboundStatus::Limit) {
        why = "relay draining: no new sessions";
    } else {
        why = fmt::format("connect to {} failed: {}", o.resolved, std::strerror(o.error));
    }
    refuse(agent, agent_name, request_id, destination, o.status, o.error, o.resolved, why, true);
}

void Outbound::refuse(uint64_t agent, const std::string& agent_name, uint32_t request_id,
                      const std::string& destination, OutboundStatus status, int error,
                      const std::string& resolved, const std::string& why, bool holds_slot) {
    if (holds_slot) {
        counts_.release(agent_name);
    }
    (void)hooks_.answer(
        agent, {request_id, status, status == OutboundStatus::ConnectFailed ? error : 0, {}});
    const std::string_view reason = rejected_reason(status);
    shards_.invoke_on(
        0, [r = std::string(reason)](Shard& s, io::Worker&) { s.count_outbound_rejected(r); });
    const int64_t held = reject_log_.allow(agent_name, log::LogLimiter::Clock::now());
    if (held < 0) {
        return;
    }
    log::event(log::Ev::OutboundRejected,
               {{"DESTINATION", destination},
                {"REASON", std::string(reason)},
                {"AGENT", agent_name},
                {"RESOLVED_ADDR", resolved},
                {"SUPPRESSED", held > 0 ? std::to_string(held) : std::string()}},
               fmt::format("outbound request of agent \"{}\" to {} refused: {}{}", agent_name,
                           destination, why, log::LogLimiter::held_note(held)));
}

}  // namespace sp::relay
