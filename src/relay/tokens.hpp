// SPDX-License-Identifier: Apache-2.0
// Data-channel tokens on the relay (control-protocol.md section 6.3): how a
// token names the worker that owns it, and the table that owner keeps of
// the tokens it issued, so a channel hello is verified by one hash lookup.
// Single-threaded: one table per owner.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/result.hpp"
#include "control/frame.hpp"

namespace sp::relay {

/// A fresh token for worker `owner`: bytes 0-1 carry `owner` (big-endian),
/// the other 30 bytes come from getrandom(2). The owner is not secret: it
/// only routes a channel to the worker that can verify it, and 240 random
/// bits stay unguessable.
[[nodiscard]] Result<control::Token> make_token(unsigned owner);
/// `n` fresh tokens for worker `owner`, from one getrandom(2) call.
[[nodiscard]] Result<std::vector<control::Token>> make_tokens(unsigned owner, size_t n);
/// The worker that issued `t` (may be out of range for a forged token).
[[nodiscard]] unsigned token_owner(const control::Token& t) noexcept;

class TokenTable final {
public:
    using Clock = std::chrono::steady_clock;

    struct Grant {
        uint64_t agent = 0;  // the control connection the token was sent on
        Clock::time_point expires;
    };

    /// `hash_key` keys the bucket hash (random per table), so the buckets a
    /// presented token probes say nothing an attacker can aim at.
    explicit TokenTable(uint64_t hash_key) : grants_(64, Hash{hash_key}) {}

    void add(const control::Token& t, Grant g);
    /// Single use: a known token is removed whatever happens next. Returns
    /// the grant when the token is known and not expired at `now`; nullopt
    /// for unknown, used or expired ones. One hash lookup, then a
    /// constant-time compare of the candidates in that bucket.
    [[nodiscard]] std::optional<Grant> redeem(const control::Token& t, Clock::time_point now);
    /// Voids every token of `agent` (it left Ready); returns how many.
    size_t void_agent(uint64_t agent);
    /// Drops tokens that expired before `now`; calls expired(agent) for each.
    template <class Fn>
    void expire(Clock::time_point now, Fn&& expired) {
        for (auto it = grants_.begin(); it != grants_.end();) {
            if (it->second.expires < now) {
                const uint64_t agent = it->second.agent;
                it = grants_.erase(it);
                forget(agent);
                expired(agent);
            } else {
                ++it;
            }
        }
    }

    /// Unused, unexpired tokens of `agent` (its channels on the way).
    [[nodiscard]] size_t outstanding(uint64_t agent) const;
    [[nodiscard]] size_t size() const noexcept { return grants_.size(); }

private:
    struct Hash {
        uint64_t key = 0;
        size_t operator()(const control::Token& t) const noexcept;
    };
    struct Equal {
        bool operator()(const control::Token& a, const control::Token& b) const noexcept;
    };
    void forget(uint64_t agent) noexcept;

    std::unordered_map<control::Token, Grant, Hash, Equal> grants_;
    std::unordered_map<uint64_t, size_t> per_agent_;
};

}  // namespace sp::relay
