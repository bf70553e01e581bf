// SPDX-License-Identifier: Apache-2.0
#include "agent/link_policy.hpp"

#include <algorithm>

namespace sp::agent {

std::vector<Want> wanted_links(std::span<const LinkView> links, bool stopping) {
    std::vector<Want> out(links.size(), stopping ? Want::StopShutdown : Want::Run);
    if (stopping) {
        return out;
    }
    const auto primary = [](const LinkView& l) { return !l.standby; };
    const bool primary_up = std::any_of(links.begin(), links.end(), [&](const LinkView& l) {
        return primary(l) && l.phase == LinkPhase::Ready;
    });
    // An idle primary is about to be started by this very verdict: it counts
    // as trying, or at start-up the standby would be dialled alongside it.
    const bool primary_trying = std::any_of(links.begin(), links.end(), [&](const LinkView& l) {
        return primary(l) && (l.phase == LinkPhase::Trying || l.phase == LinkPhase::Idle);
    });
    for (size_t i = 0; i < links.size(); ++i) {
        const LinkView& l = links[i];
        if (primary(l)) {
            continue;
        }
        const bool active = l.phase == LinkPhase::Trying || l.phase == LinkPhase::Ready;
        if (primary_up || (!active && primary_trying)) {
            out[i] = Want::StopStandby;
        }
    }
    return out;
}

}  // namespace sp::agent
