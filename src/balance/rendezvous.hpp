// SPDX-License-Identifier: Apache-2.0
// Rendezvous (highest random weight) hashing: a client goes to the target
// with the highest score for (client, target name). Every thread and every
// process computes the same order from the same names, and a target that
// joins or leaves moves only the clients whose best it is or was: the
// others keep their choice (hash % n would remap nearly all of them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>

namespace sp::balance {

/// Score of `target` for `client`; both are names (an IP address as text,
/// an agent name, a backend host), so the score does not depend on list
/// positions.
[[nodiscard]] uint64_t rendezvous_score(std::string_view client, std::string_view target) noexcept;

/// Index in [0, count) of the highest-scoring `name(i)` among those
/// `usable(i)` accepts, or `count` when none is usable.
template <class Name, class Usable>
[[nodiscard]] size_t rendezvous_pick(std::string_view client, size_t count, Name&& name,
                                     Usable&& usable) {
    size_t best = count;
    uint64_t best_score = 0;
    for (size_t i = 0; i < count; ++i) {
        if (!usable(i)) {
            continue;
        }
        const uint64_t s = rendezvous_score(client, name(i));
        if (best == count || s > best_score) {
            best = i;
            best_score = s;
        }
    }
    return best;
}

/// The same over a list of names.
template <class Names, class Usable>
[[nodiscard]] size_t rendezvous_pick(std::string_view client, const Names& names, Usable&& usable) {
    return rendezvous_pick(
        client, names.size(), [&](size_t i) -> std::string_view { return names[i]; },
        std::forward<Usable>(usable));
}

}  // namespace sp::balance
