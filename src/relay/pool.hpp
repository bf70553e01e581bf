// SPDX-License-Identifier: Apache-2.0
// The adaptive data-channel pool of one agent on one worker (protocol doc
// section 6.3): how many idle channels to keep, following the recent
// arrival rate between a floor and the agent's share of `pool`, and how many
// tokens to ask for, in batches, so refilling never costs a control round
// trip per session. Pure: the shard feeds it events and a 1 s tick.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sp::relay {

class PoolPolicy final {
public:
    /// Unused tokens of one agent one worker may hold: room for a burst of
    /// waiting clients, and a bound on what an agent can make us remember.
    static constexpr size_t kMaxOutstanding = 1024;
    /// Idle channels kept when the agent is quiet (never above the cap).
    static constexpr unsigned kFloor = 1;

    /// `cap`: this worker's share of the agent's HELLO pool_size (0 = no
    /// pool: channels only on demand). Starts at the cap, as the whole pool
    /// is issued after HELLO.
    explicit PoolPolicy(unsigned cap);

    void paired() noexcept { ++paired_; }
    /// A channel died on arrival or while idle.
    void dead() noexcept { ++dead_; }
    /// Once a second: the demand estimate follows the pairings of the last
    /// second up at once and decays by 1/8 per second.
    void tick() noexcept;
    /// A request for tokens went out.
    void asked() noexcept { asked_ = true; }

    [[nodiscard]] unsigned cap() const noexcept { return cap_; }
    [[nodiscard]] unsigned floor() const noexcept { return cap_ < kFloor ? cap_ : kFloor; }
    /// Idle channels to keep: ceil(demand), clamped to [floor, cap].
    [[nodiscard]] unsigned target() const noexcept;

    /// Tokens to ask for now, given idle channels, tokens out and clients
    /// waiting for this agent; 0 = none. Asks only when the pool is at or
    /// below half its target (a low-water mark, so refills come in
    /// batches) or clients wait; never beyond kMaxOutstanding or one frame;
    /// and only once per tick while channels keep dying, so a broken agent
    /// cannot be made to dial in a loop.
    [[nodiscard]] unsigned want(size_t idle, size_t outstanding, size_t waiting) const noexcept;
    /// Idle channels above the target (the tick closes them).
    [[nodiscard]] size_t excess(size_t idle) const noexcept;

private:
    unsigned cap_;
    double demand_;
    unsigned paired_ = 0;
    unsigned dead_ = 0;
    bool dying_ = false;  // channels died during the last tick
    bool asked_ = false;  // a request went out this tick
};

}  // namespace sp::relay
