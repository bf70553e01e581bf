// SPDX-License-Identifier: Apache-2.0
// Client-IP affinity with a memory: which target (backend host, agent) a
// client IP is kept on, how many of its sessions are open there, and until
// when an idle entry is kept. Pure: no sockets, no clock reads, no threads;
// the caller owns one table per affinity group on one thread.
//
// The rule that makes FTP safe: while a client has a session open on its
// target, a new connection of that client goes to the same target or is
// refused - never to another one, even if that target looks down or just
// refused (a passive data connection on another FTP server would reach a
// port that server opened for a different client). Only a client with no
// session open may move, to the best usable target by rendezvous hashing.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/addr.hpp"

namespace sp::balance {

/// One target the caller could use, as it sees it now.
struct Candidate {
    enum class State : uint8_t {
        Up,        // usable
        Down,      // health checks or a recent failure say no
        Excluded,  // already tried by this very session: never again
    };
    std::string name;
    State state = State::Up;
};

struct Choice {
    enum class Verdict : uint8_t {
        Fresh,      // no memory for the client: best usable target, now pinned
        Kept,       // the client's pinned target
        Moved,      // the pinned target is unusable and no session is open there
        Refused,    // the pinned target is unusable but sessions are open there
        Exhausted,  // no candidate left at all
    };
    Verdict verdict = Verdict::Exhausted;
    size_t index = 0;    // into the candidates, unless Refused/Exhausted
    std::string pinned;  // the client's target before this choice, if any
    [[nodiscard]] bool ok() const noexcept {
        return verdict != Verdict::Refused && verdict != Verdict::Exhausted;
    }
};

/// How a table names a client: its address, an IPv4-mapped IPv6 address as
/// IPv4, so one client is one entry whichever socket family it came in on.
[[nodiscard]] inline std::string client_key(const IpAddress& ip) {
    return ip.unmapped().to_string();
}

/// The thread (shard) whose table remembers `client`, out of `shards`: one
/// owner per client address keeps all of its connections consistent.
[[nodiscard]] unsigned owner_shard(std::string_view client, unsigned shards) noexcept;

class StickyTable final {
public:
    using Clock = std::chrono::steady_clock;

    /// At most `capacity` clients are remembered; past that, idle expired
    /// entries are swept (at most once a second), and if none can go, new
    /// clients are placed by rendezvous without memory (still consistent
    /// while targets are up).
    explicit StickyTable(size_t capacity) : capacity_(capacity) {}

    /// What happens to a client with sessions open whose target is no
    /// longer usable. Hold: refused (the agent's backend hosts, where the
    /// wrong host is a leak). Move: moved, sessions still counted (the
    /// relay's agents, which the operator took away or drained).
    enum class OpenClients : uint8_t { Hold, Move };

    /// Chooses a target for a new session of `client` and counts it open
    /// there (when ok()). `hold`: how long an idle entry is kept.
    [[nodiscard]] Choice acquire(std::string_view client, std::span<const Candidate> candidates,
                                 std::chrono::seconds hold, Clock::time_point now,
                                 OpenClients open_clients = OpenClients::Hold);
    /// A session acquired for `client` ended or never started.
    void release(std::string_view client, Clock::time_point now);
    /// Forgets idle entries older than their hold.
    void expire(Clock::time_point now);

    [[nodiscard]] size_t size() const noexcept { return entries_.size(); }
    /// Open sessions counted for `client` (0 when unknown).
    [[nodiscard]] uint32_t open(std::string_view client) const;
    /// The client's pinned target, or empty.
    [[nodiscard]] std::string target(std::string_view client) const;

private:
    struct Entry {
        std::string target;
        uint32_t open = 0;
        Clock::time_point idle_since{};
        std::chrono::seconds hold{0};
    };
    [[nodiscard]] static bool live(const Entry& e, Clock::time_point now) noexcept {
        return e.open > 0 || now < e.idle_since + e.hold;
    }

    size_t capacity_;
    std::unordered_map<std::string, Entry> entries_;
    // A full table sweeps at most once a second: a flood of new addresses
    // must not buy a full scan per connection.
    Clock::time_point last_sweep_{};
};

}  // namespace sp::balance
