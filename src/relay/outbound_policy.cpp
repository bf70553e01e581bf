// SPDX-License-Identifier: Apache-2.0
#include "relay/outbound_policy.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace sp::relay {

namespace {

constexpr size_t kMaxHostName = 253;

bool iequal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

bool valid_name(std::string_view h) {
    if (h.empty() || h.size() > kMaxHostName) {
        return false;
    }
    return std::all_of(h.begin(), h.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_';
    });
}

}  // namespace

std::string OutboundTarget::destination() const {
    if (ip && ip->family() == AF_INET6) {
        return fmt::format("[{}]:{}", host, port);
    }
    return fmt::format("{}:{}", host, port);
}

std::optional<OutboundTarget> parse_target(std::string_view host, uint16_t port) {
    if (port == 0) {
        return std::nullopt;
    }
    std::string_view h = host;
    const bool bracketed = h.size() >= 2 && h.front() == '[' && h.back() == ']';
    if (bracketed) {
        h = h.substr(1, h.size() - 2);
    }
    OutboundTarget t;
    t.port = port;
    if (auto ip = IpAddress::parse(h)) {
        if (bracketed && ip->family() != AF_INET6) {
            return std::nullopt;
        }
        t.ip = ip->unmapped();
        t.host = t.ip->to_string();
        return t;
    }
    if (bracketed || !valid_name(h)) {
        return std::nullopt;
    }
    t.host = std::string(h);
    return t;
}

bool OutboundCounts::acquire(const std::string& agent, Limits limits) {
    const uint64_t mine = of(agent);
    if ((limits.total != 0 && total_ >= limits.total) ||
        (limits.per_agent != 0 && mine >= limits.per_agent)) {
        return false;
    }
    ++total_;
    ++per_agent_[agent];
    return true;
}

void OutboundCounts::release(const std::string& agent) {
    const auto it = per_agent_.find(agent);
    if (it == per_agent_.end()) {
        return;
    }
    --total_;
    if (--it->second == 0) {
        per_agent_.erase(it);
    }
}

uint64_t OutboundCounts::of(const std::string& agent) const {
    const auto it = per_agent_.find(agent);
    return it == per_agent_.end() ? 0 : it->second;
}

control::OutboundStatus outbound_precheck(const config::RelayConfig& cfg,
                                          const OutboundTarget& target, const std::string& agent,
                                          OutboundCounts& counts) {
    using control::OutboundStatus;
    if (cfg.outbound_allow.empty()) {
        return OutboundStatus::Disabled;
    }
    bool possible = false;
    if (target.ip) {
        possible = config::outbound_allowed(cfg, "", *target.ip, target.port);
    } else {
        // A name rule must name it; a CIDR rule may still admit what it
        // resolves to, which only the resolved addresses can tell.
        possible = std::any_of(cfg.outbound_allow.begin(), cfg.outbound_allow.end(),
                               [&](const config::OutboundRule& r) {
                                   return r.ports.contains(target.port) &&
                                          (r.cidr || iequal(r.host, target.host));
                               });
    }
    if (!possible) {
        return OutboundStatus::Denied;
    }
    if (!counts.acquire(agent, {cfg.limits.max_outbound_sessions,
                                cfg.limits.max_outbound_sessions_per_agent})) {
        return OutboundStatus::Limit;
    }
    return OutboundStatus::Ok;
}

std::vector<SocketAddress> allowed_addresses(const config::RelayConfig& cfg,
                                             const OutboundTarget& target,
                                             const std::vector<IpAddress>& resolved) {
    std::vector<SocketAddress> out;
    const auto consider = [&](const IpAddress& raw, std::string_view name) {
        const IpAddress ip = raw.unmapped();
        if (!config::outbound_allowed(cfg, name, ip, target.port)) {
            return;
        }
        const SocketAddress sa(ip, target.port);
        if (std::find(out.begin(), out.end(), sa) == out.end()) {
            out.push_back(sa);
        }
    };
    if (target.ip) {
        consider(*target.ip, "");
        return out;
    }
    for (const auto& ip : resolved) {
        consider(ip, target.host);
    }
    return out;
}

std::string_view rejected_reason(control::OutboundStatus s) noexcept {
    switch (s) {
        case control::OutboundStatus::Ok:
            return "ok";
        case control::OutboundStatus::Denied:
            return "not-allowed";
        case control::OutboundStatus::ResolveFailed:
            return "resolve-failed";
        case control::OutboundStatus::ConnectFailed:
            return "connect-failed";
        case control::OutboundStatus::Timeout:
            return "timeout";
        case control::OutboundStatus::Disabled:
            return "disabled";
        case control::OutboundStatus::Limit:
            return "limit";
    }
    return "?";
}

}  // namespace sp::relay
