// SPDX-License-Identifier: Apache-2.0
#include "agent/affinity.hpp"

#include "balance/rendezvous.hpp"

namespace sp::agent {

unsigned affinity_owner(std::string_view client, unsigned shards) noexcept {
    if (shards <= 1) {
        return 0;
    }
    // Any stable hash would do; this one is at hand and spreads well.
    return static_cast<unsigned>(balance::rendezvous_score(client, "owner") % shards);
}

}  // namespace sp::agent
