// SPDX-License-Identifier: Apache-2.0
#include "balance/sticky_table.hpp"

#include <algorithm>
#include <iterator>

#include "balance/rendezvous.hpp"

namespace sp::balance {

namespace {

// The best candidate in `state`, by rendezvous over the names.
size_t best_in(std::string_view client, std::span<const Candidate> c, Candidate::State state) {
    return rendezvous_pick(
        client, c.size(), [&](size_t i) -> std::string_view { return c[i].name; },
        [&](size_t i) { return c[i].state == state; });
}

}  // namespace

unsigned owner_shard(std::string_view client, unsigned shards) noexcept {
    if (shards <= 1) {
        return 0;
    }
    return static_cast<unsigned>(rendezvous_score(client, "owner") % shards);
}

Choice StickyTable::acquire(std::string_view client, std::span<const Candidate> candidates,
                            std::chrono::seconds hold, Clock::time_point now,
                            OpenClients open_clients) {
    Choice out;
    auto it = entries_.find(std::string(client));
    if (it != entries_.end() && !live(it->second, now)) {
        entries_.erase(it);
        it = entries_.end();
    }
    if (it != entries_.end()) {
        Entry& e = it->second;
        out.pinned = e.target;
        const auto pos = std::find_if(candidates.begin(), candidates.end(),
                                      [&](const Candidate& c) { return c.name == e.target; });
        if (pos != candidates.end()) {
            // Open sessions prove the target serves this client better than
            // any health view: a Down target is kept while they last.
            const bool usable = pos->state == Candidate::State::Up ||
                                (pos->state == Candidate::State::Down && e.open > 0);
            if (usable) {
                out.verdict = Choice::Verdict::Kept;
                out.index = static_cast<size_t>(std::distance(candidates.begin(), pos));
                ++e.open;
                e.hold = hold;  // the latest session's service decides (a reload may lower it)
                return out;
            }
        }
        if (e.open > 0 && open_clients == OpenClients::Hold) {
            out.verdict = Choice::Verdict::Refused;
            return out;
        }
    }
    size_t pick = best_in(client, candidates, Candidate::State::Up);
    if (pick == candidates.size()) {
        // None is up: try the best of those only believed down rather than
        // refuse outright (a health view can be stale).
        pick = best_in(client, candidates, Candidate::State::Down);
    }
    if (pick == candidates.size()) {
        return out;  // Exhausted
    }
    out.index = pick;
    if (it != entries_.end()) {
        out.verdict = Choice::Verdict::Moved;
        it->second.target = candidates[pick].name;
        ++it->second.open;  // 0 before, unless OpenClients::Move
        it->second.hold = hold;
        return out;
    }
    out.verdict = Choice::Verdict::Fresh;
    if (entries_.size() >= capacity_ && now - last_sweep_ >= std::chrono::seconds(1)) {
        last_sweep_ = now;
        expire(now);
    }
    if (entries_.size() < capacity_) {
        entries_.emplace(std::string(client), Entry{candidates[pick].name, 1, now, hold});
    }
    return out;
}

void StickyTable::release(std::string_view client, Clock::time_point now) {
    const auto it = entries_.find(std::string(client));
    if (it == entries_.end() || it->second.open == 0) {
        return;  // placed without memory (table full), or already released
    }
    if (--it->second.open == 0) {
        it->second.idle_since = now;
    }
}

void StickyTable::expire(Clock::time_point now) {
    std::erase_if(entries_, [&](const auto& kv) { return !live(kv.second, now); });
}

uint32_t StickyTable::open(std::string_view client) const {
    const auto it = entries_.find(std::string(client));
    return it == entries_.end() ? 0 : it->second.open;
}

std::string StickyTable::target(std::string_view client) const {
    const auto it = entries_.find(std::string(client));
    return it == entries_.end() ? std::string() : it->second.target;
}

}  // namespace sp::balance
