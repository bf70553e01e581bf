// SPDX-License-Identifier: Apache-2.0
// The rules a shard applies to data channels, as pure code: how many
// channels a relay may make the agent open (threat model, protocol doc
// section 8.3: "pool size plus a bounded on-demand rate"), and what a binding
// header is worth. No sockets, no clock reads: time is passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/addr.hpp"
#include "control/frame.hpp"

namespace sp::agent {

/// Channels a relay may have the agent dial on demand beyond its pool: one
/// full OPEN_CHANNELS, which covers a burst of simultaneous new clients.
inline constexpr uint32_t kOnDemandChannels = control::kMaxTokens;
/// Channels that end without carrying a session (died on arrival, closed
/// idle, bad binding) are paid for from a bucket refilled at this rate per
/// relay: a relay cannot make the agent open useless channels faster.
inline constexpr uint32_t kWastedChannelsPerSecond = 64;

struct ChannelLimits {
    uint32_t max_open = 1;  // dialled and not yet bound, at once
    uint32_t burst = 1;     // wasted channels allowed at once (bucket size)
    double refill_per_s = 1;
};

/// The limits of one relay link, split evenly over `shards` (each shard
/// enforces its share without talking to the others). Never below 1.
[[nodiscard]] ChannelLimits link_limits(uint32_t pool, unsigned shards) noexcept;

/// One relay link's channel budget on one shard. Each dial takes a credit
/// and an open slot; a channel that carries a session gives its credit back
/// (so real sessions are bounded only by max_open), one that ends without
/// does not, and the bucket refills at refill_per_s.
class ChannelBudget final {
public:
    using Clock = std::chrono::steady_clock;
    enum class Verdict : uint8_t { Dial, OverCap, OverRate };

    ChannelBudget(ChannelLimits limits, Clock::time_point now) noexcept;

    /// Before dialling: Dial takes a slot and a credit; the others take nothing.
    [[nodiscard]] Verdict take(Clock::time_point now) noexcept;
    /// A channel got a valid binding: frees its slot and refunds its credit.
    void bound() noexcept;
    /// A channel ended before a valid binding: frees its slot only.
    void dropped() noexcept;
    /// New limits (a reload changed the pool); open channels stay counted.
    void set_limits(ChannelLimits limits) noexcept;

    [[nodiscard]] uint32_t open() const noexcept { return open_; }

private:
    void refill(Clock::time_point now) noexcept;

    ChannelLimits limits_;
    uint32_t open_ = 0;
    double credits_;
    Clock::time_point last_;
};

[[nodiscard]] std::string_view to_string(ChannelBudget::Verdict v) noexcept;

/// Why a binding header was refused. The channel is closed; the relay then
/// closes its client.
enum class BindingRefusal : uint8_t {
    Malformed,       // does not decode (bad magic, length, fields)
    UnknownService,  // decodes, but names no service of this agent ("" included)
    BadAddress,      // client_addr or listen_addr is not "ip:port"
};
[[nodiscard]] std::string_view to_string(BindingRefusal r) noexcept;

struct BindingVerdict {
    enum class Kind : uint8_t { NeedMore, Refused, Bound };
    Kind kind = Kind::NeedMore;
    size_t need = 0;  // NeedMore: total header bytes needed so far
    BindingRefusal refusal = BindingRefusal::Malformed;
    std::string detail;                   // Refused: for the log (no peer bytes beyond a name)
    control::Binding binding;             // Bound, and Refused after decoding
    std::optional<SocketAddress> client;  // Bound
    std::optional<SocketAddress> listen;  // Bound
};

/// Judges the header bytes received so far. NeedMore never asks for more
/// than the header (client bytes stay in the socket for the pump), and a
/// decoded header is final: it is Bound or Refused, never "incomplete".
[[nodiscard]] BindingVerdict judge_binding(
    std::span<const uint8_t> bytes, const std::function<bool(std::string_view)>& known_service);

}  // namespace sp::agent
