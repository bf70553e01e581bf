// SPDX-License-Identifier: Apache-2.0
// Reconnect delays for a relay link (protocol doc section 5.2): capped
// exponential growth with jitter, so a fleet of agents that lost the relay
// at once does not return in lockstep. Pure: the randomness is a seeded
// xorshift, so tests replay it exactly.
#pragma once

#include <chrono>
#include <cstdint>

namespace sp::control {

class Backoff final {
public:
    using Ms = std::chrono::milliseconds;

    Backoff(Ms initial, Ms cap, uint64_t seed) noexcept
        : initial_(initial), cap_(cap), state_(seed | 1U) {}

    /// The next delay: uniformly random in [d/2, d] with
    /// d = min(cap, initial x 2^n), n = attempt() before the call; then n + 1.
    [[nodiscard]] Ms next() noexcept;
    /// After a connection that lasted: start from `initial` again.
    void reset() noexcept { attempt_ = 0; }
    /// A failure that retrying fast cannot fix (bad key, version): the next
    /// delay is drawn at the cap.
    void max_out() noexcept;
    /// Consecutive failures counted so far.
    [[nodiscard]] unsigned attempt() const noexcept { return attempt_; }

private:
    Ms initial_;
    Ms cap_;
    uint64_t state_;
    unsigned attempt_ = 0;
};

}  // namespace sp::control
