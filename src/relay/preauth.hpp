// SPDX-License-Identifier: Apache-2.0
// How many connections on the control port may be unauthenticated at once
// (classifying, in TLS, before HELLO), in total and per source address, so
// one address holding thousands of idle connections cannot keep agents
// out. Pure bookkeeping; one instance per thread that holds such connections.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "base/addr.hpp"

namespace sp::relay {

class PreAuth final {
public:
    /// `cap` in total; `per_address` for one IPv4 address or one IPv6 /64
    /// (one host usually holds a whole /64).
    PreAuth(size_t cap, size_t per_address) : cap_(cap), per_address_(per_address) {}

    /// Takes a slot for a connection from `ip`; false (nothing taken) when the
    /// total or that address's share is used up.
    [[nodiscard]] bool enter(const IpAddress& ip);
    /// Gives back a slot enter() took for `ip`.
    void leave(const IpAddress& ip) noexcept;

    [[nodiscard]] size_t size() const noexcept { return total_; }
    [[nodiscard]] size_t of(const IpAddress& ip) const;

private:
    struct Key {
        uint64_t hi = 0;
        uint64_t lo = 0;
        bool operator==(const Key&) const = default;
    };
    struct KeyHash {
        size_t operator()(const Key& k) const noexcept { return k.hi * 31 + k.lo; }
    };
    [[nodiscard]] static Key key_of(const IpAddress& ip) noexcept;

    size_t cap_;
    size_t per_address_;
    size_t total_ = 0;
    std::unordered_map<Key, size_t, KeyHash> by_address_;
};

}  // namespace sp::relay
