// SPDX-License-Identifier: Apache-2.0
#include "io/timer_list.hpp"

#include <vector>

namespace sp::io {

uint64_t TimerList::add(Clock::time_point when, Fn fn) {
    const uint64_t id = next_id_++;
    by_deadline_.emplace(Key{when, id}, std::move(fn));
    deadline_of_.emplace(id, when);
    return id;
}

bool TimerList::cancel(uint64_t id) noexcept {
    const auto it = deadline_of_.find(id);
    if (it == deadline_of_.end()) {
        return false;
    }
    by_deadline_.erase(Key{it->second, id});
    deadline_of_.erase(it);
    return true;
}

std::optional<TimerList::Clock::time_point> TimerList::next() const noexcept {
    if (by_deadline_.empty()) {
        return std::nullopt;
    }
    return by_deadline_.begin()->first.first;
}

size_t TimerList::run_due(Clock::time_point now, Worker& w) {
    if (by_deadline_.empty() || by_deadline_.begin()->first.first > now) {
        return 0;
    }
    // Ids first: callbacks may add and cancel, which would invalidate a
    // walk over the map itself.
    std::vector<uint64_t> due;
    for (auto it = by_deadline_.begin(); it != by_deadline_.end() && it->first.first <= now; ++it) {
        due.push_back(it->first.second);
    }
    size_t ran = 0;
    for (uint64_t id : due) {
        const auto d = deadline_of_.find(id);
        if (d == deadline_of_.end()) {
            continue;  // cancelled by an earlier callback
        }
        auto node = by_deadline_.extract(Key{d->second, id});
        deadline_of_.erase(d);
        if (node.mapped()) {
            node.mapped()(w);
        }
        ++ran;
    }
    return ran;
}

}  // namespace sp::io
