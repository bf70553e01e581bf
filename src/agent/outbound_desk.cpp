// SPDX-License-Identifier: Apache-2.0
#include "agent/outbound_desk.hpp"

namespace sp::agent {

uint64_t OutboundDesk::load(LinkId link) const {
    const auto it = load_.find(link);
    return it == load_.end() ? 0 : it->second;
}

std::optional<LinkId> OutboundDesk::choose(const std::vector<LinkId>& ready) const {
    std::optional<LinkId> best;
    uint64_t best_load = 0;
    for (const LinkId l : ready) {
        const uint64_t n = load(l);
        if (!best || n < best_load) {
            best = l;
            best_load = n;
        }
    }
    return best;
}

std::optional<uint32_t> OutboundDesk::open(OutboundTicket t, LinkId link) {
    if (pending_.size() >= kMaxPending) {
        return std::nullopt;
    }
    // Ids wrap after 2^32 requests; one still open is skipped (at most
    // kMaxPending are), and 0 is never used.
    while (next_ == 0 || pending_.count(next_) != 0) {
        ++next_;
    }
    const uint32_t id = next_++;
    pending_.emplace(id, Pending{t, link, false});
    by_ticket_[t] = id;
    ++load_[link];
    return id;
}

std::optional<OutboundTicket> OutboundDesk::answer(LinkId link, uint32_t request_id, bool ok) {
    const auto it = pending_.find(request_id);
    if (it == pending_.end() || it->second.link != link) {
        return std::nullopt;
    }
    const Pending p = it->second;
    pending_.erase(it);
    if (!p.cancelled) {
        by_ticket_.erase(p.ticket);
    }
    if (!ok || p.cancelled) {
        // Not (or no longer) a session: the relay's session, if it made
        // one, dies with the token nobody presents.
        ended(link);
    }
    if (p.cancelled) {
        return std::nullopt;
    }
    return p.ticket;
}

void OutboundDesk::cancel(OutboundTicket t) {
    const auto it = by_ticket_.find(t);
    if (it == by_ticket_.end()) {
        return;
    }
    if (const auto p = pending_.find(it->second); p != pending_.end()) {
        p->second.cancelled = true;
    }
    by_ticket_.erase(it);
}

void OutboundDesk::ended(LinkId link) {
    const auto it = load_.find(link);
    if (it == load_.end()) {
        return;
    }
    if (--it->second == 0) {
        load_.erase(it);
    }
}

std::vector<OutboundTicket> OutboundDesk::link_down(LinkId link) {
    std::vector<OutboundTicket> out;
    for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.link != link) {
            ++it;
            continue;
        }
        if (!it->second.cancelled) {
            out.push_back(it->second.ticket);
            by_ticket_.erase(it->second.ticket);
        }
        ended(link);
        it = pending_.erase(it);
    }
    return out;
}

}  // namespace sp::agent
