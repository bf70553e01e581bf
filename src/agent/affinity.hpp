// SPDX-License-Identifier: Apache-2.0
// The agent's client-IP affinity memory, one balance::StickyTable per
// affinity group. Each client IP has one owner shard (balance::owner_shard)
// whose tables decide for every shard: an FTP control connection and its
// passive data connections may land on different workers and must still
// agree on a backend host. Worker thread of the owner only.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "balance/sticky_table.hpp"

namespace sp::agent {

class AffinityTables final {
public:
    /// Clients remembered per group on one shard: bounds memory under a
    /// flood of source addresses (about 200 bytes each).
    static constexpr size_t kCapacity = 65536;

    [[nodiscard]] balance::StickyTable& group(const std::string& name) {
        return groups_.try_emplace(name, kCapacity).first->second;
    }
    /// Drops idle entries past their hold, in every group.
    void expire(balance::StickyTable::Clock::time_point now) {
        for (auto& [name, t] : groups_) {
            t.expire(now);
        }
    }
    [[nodiscard]] size_t size() const noexcept {
        size_t n = 0;
        for (const auto& [name, t] : groups_) {
            n += t.size();
        }
        return n;
    }

private:
    std::map<std::string, balance::StickyTable, std::less<>> groups_;
};

}  // namespace sp::agent
