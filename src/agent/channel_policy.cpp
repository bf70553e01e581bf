// SPDX-License-Identifier: Apache-2.0
#include "agent/channel_policy.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace sp::agent {

ChannelLimits link_limits(uint32_t pool, unsigned shards) noexcept {
    const uint32_t n = std::max(1U, shards);
    const uint32_t cap = pool + kOnDemandChannels;
    ChannelLimits l;
    l.max_open = std::max(1U, (cap + n - 1) / n);
    l.burst = l.max_open;
    l.refill_per_s = std::max(1.0, static_cast<double>(kWastedChannelsPerSecond) / n);
    return l;
}

ChannelBudget::ChannelBudget(ChannelLimits limits, Clock::time_point now) noexcept
    : limits_(limits), credits_(limits.burst), last_(now) {}

void ChannelBudget::refill(Clock::time_point now) noexcept {
    if (now <= last_) {
        return;
    }
    const double s = std::chrono::duration<double>(now - last_).count();
    credits_ = std::min<double>(limits_.burst, credits_ + s * limits_.refill_per_s);
    last_ = now;
}

ChannelBudget::Verdict ChannelBudget::take(Clock::time_point now) noexcept {
    refill(now);
    if (open_ >= limits_.max_open) {
        return Verdict::OverCap;
    }
    if (credits_ < 1.0) {
        return Verdict::OverRate;
    }
    credits_ -= 1.0;
    ++open_;
    return Verdict::Dial;
}

void ChannelBudget::bound() noexcept {
    if (open_ > 0) {
        --open_;
    }
    credits_ = std::min<double>(limits_.burst, credits_ + 1.0);
}

void ChannelBudget::dropped() noexcept {
    if (open_ > 0) {
        --open_;
    }
}

void ChannelBudget::set_limits(ChannelLimits limits) noexcept {
    limits_ = limits;
    credits_ = std::min<double>(limits_.burst, credits_);
}

std::string_view to_string(ChannelBudget::Verdict v) noexcept {
    switch (v) {
        case ChannelBudget::Verdict::Dial:
            return "dial";
        case ChannelBudget::Verdict::OverCap:
            return "channel-cap";
        case ChannelBudget::Verdict::OverRate:
            return "channel-rate";
    }
    return "?";
}

std::string_view to_string(BindingRefusal r) noexcept {
    switch (r) {
        case BindingRefusal::Malformed:
            return "bad-binding";
        case BindingRefusal::UnknownService:
            return "unknown-service";
        case BindingRefusal::BadAddress:
            return "bad-address";
    }
    return "?";
}

BindingVerdict judge_binding(std::span<const uint8_t> bytes,
                             const std::function<bool(std::string_view)>& known_service) {
    BindingVerdict v;
    auto r = control::decode_binding(bytes);
    if (r.status == control::DecodeStatus::NeedMore) {
        v.need = r.needed;
        return v;
    }
    v.kind = BindingVerdict::Kind::Refused;
    if (r.status == control::DecodeStatus::Error) {
        v.detail = r.error;
        return v;
    }
    v.binding = std::move(r.binding);
    // The old agent took an empty service for "not decoded yet" and waited
    // for readiness that had already been consumed: a spin. A decoded
    // header is final whatever it names.
    if (!known_service(v.binding.service)) {
        v.refusal = BindingRefusal::UnknownService;
        v.detail = v.binding.service.empty()
                       ? std::string("the relay bound a channel to no service")
                       : fmt::format("the relay bound a channel to unknown service \"{}\"",
                                     v.binding.service.substr(0, control::kMaxName));
        return v;
    }
    auto client = SocketAddress::parse(v.binding.client_addr);
    auto listen = SocketAddress::parse(v.binding.listen_addr);
    if (!client || !listen) {
        v.refusal = BindingRefusal::BadAddress;
        v.detail = "client or listener address in the binding header is not ip:port";
        return v;
    }
    v.kind = BindingVerdict::Kind::Bound;
    v.client = *client;
    v.listen = *listen;
    return v;
}

}  // namespace sp::agent
