// SPDX-License-Identifier: Apache-2.0
// Reconnect delays for the agent: capped exponential growth with jitter, so
// a fleet of agents that lost the relay at once does not return in lockstep.
#pragma once

#include <chrono>
#include <cstdint>

namespace sp::agent {

class Backoff final {
public:
    using Ms = std::chrono::milliseconds;

    Backoff(Ms initial, Ms cap, uint64_t seed) noexcept
        : initial_(initial), cap_(cap), state_(seed | 1U) {}

    /// The next delay: uniformly random in [d/2, d] where d doubles from
    /// `initial` on each call up to `cap`.
    [[nodiscard]] Ms next() noexcept;
    /// After a connection that worked: start from `initial` again.
    void reset() noexcept { attempt_ = 0; }
    [[nodiscard]] unsigned attempt() const noexcept { return attempt_; }

private:
    Ms initial_;
    Ms cap_;
    uint64_t state_;
    unsigned attempt_ = 0;
};

}  // namespace sp::agent
