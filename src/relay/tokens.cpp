// SPDX-License-Identifier: Apache-2.0
#include "relay/tokens.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "control/token.hpp"

namespace sp::relay {

Result<control::Token> make_token(unsigned owner) {
    auto t = control::random_token();
    if (!t) {
        return t;
    }
    (*t)[0] = static_cast<uint8_t>(owner >> 8);
    (*t)[1] = static_cast<uint8_t>(owner);
    return t;
}

Result<std::vector<control::Token>> make_tokens(unsigned owner, size_t n) {
    std::vector<uint8_t> bytes(n * sizeof(control::Token));
    size_t got = 0;
    // Large reads from the urandom source may come back short (a signal):
    // loop until all are there.
    while (got < bytes.size()) {
        const ssize_t r = ::getrandom(bytes.data() + got, bytes.size() - got, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno_error("getrandom");
        }
        got += static_cast<size_t>(r);
    }
    std::vector<control::Token> out(n);
    for (size_t i = 0; i < n; ++i) {
        std::memcpy(out[i].data(), bytes.data() + i * sizeof(control::Token),
                    sizeof(control::Token));
        out[i][0] = static_cast<uint8_t>(owner >> 8);
        out[i][1] = static_cast<uint8_t>(owner);
    }
    return out;
}

unsigned token_owner(const control::Token& t) noexcept {
    return (static_cast<unsigned>(t[0]) << 8) | t[1];
}

size_t TokenTable::Hash::operator()(const control::Token& t) const noexcept {
    // Random bytes keyed and mixed (murmur3's fmix64): uniform buckets for
    // issued tokens, and nothing to aim at for presented ones.
    uint64_t v = 0;
    std::memcpy(&v, t.data() + 8, sizeof v);
    v ^= key;
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    v *= 0xc4ceb9fe1a85ec53ULL;
    v ^= v >> 33;
    return static_cast<size_t>(v);
}

bool TokenTable::Equal::operator()(const control::Token& a,
                                   const control::Token& b) const noexcept {
    return control::token_equal(a, b);
}

void TokenTable::add(const control::Token& t, Grant g) {
    const uint64_t agent = g.agent;
    if (grants_.insert_or_assign(t, g).second) {
        ++per_agent_[agent];
    }
}

std::optional<TokenTable::Grant> TokenTable::redeem(const control::Token& t,
                                                    Clock::time_point now) {
    const auto it = grants_.find(t);
    if (it == grants_.end()) {
        return std::nullopt;
    }
    const Grant g = it->second;
    grants_.erase(it);
    forget(g.agent);
    if (g.expires < now) {
        return std::nullopt;
    }
    return g;
}

size_t TokenTable::void_agent(uint64_t agent) {
    const size_t n =
        std::erase_if(grants_, [&](const auto& kv) { return kv.second.agent == agent; });
    per_agent_.erase(agent);
    return n;
}

size_t TokenTable::outstanding(uint64_t agent) const {
    const auto it = per_agent_.find(agent);
    return it == per_agent_.end() ? 0 : it->second;
}

void TokenTable::forget(uint64_t agent) noexcept {
    const auto it = per_agent_.find(agent);
    if (it != per_agent_.end() && --it->second == 0) {
        per_agent_.erase(it);
    }
}

}  // namespace sp::relay
