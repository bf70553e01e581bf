// SPDX-License-Identifier: Apache-2.0
#include "balance/rendezvous.hpp"

namespace sp::balance {

namespace {

uint64_t fnv1a(uint64_t h, std::string_view s) noexcept {
    for (const char c : s) {
        h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
    }
    return h;
}

}  // namespace

uint64_t rendezvous_score(std::string_view client, std::string_view target) noexcept {
    // FNV-1a over both names with a separator no name contains, then the
    // splitmix64 finaliser: FNV alone leaves the high bits of similar names
    // (10.0.0.1 / 10.0.0.2) too close to compare fairly.
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, client);
    h = (h ^ 0xffU) * 0x100000001b3ULL;
    h = fnv1a(h, target);
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

}  // namespace sp::balance
