// SPDX-License-Identifier: Apache-2.0
// DNS for the forward proxy, off every thread that runs a loop:
// getaddrinfo(3) blocks for as long as DNS takes, so lookups run on threads
// of their own and every address of a name comes back to a callback (the
// relay checks each against [outbound] allow). The agent's resolver
// (agent/resolver.hpp) keeps one address per backend name; this one
// answers each request by id.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/addr.hpp"
#include "base/result.hpp"

namespace sp::relay {

class NameResolver final {
public:
    struct Answer {
        uint64_t id = 0;
        std::vector<IpAddress> ips;  // getaddrinfo's order; empty on failure
        std::string error;           // when empty: gai_strerror text
    };
    /// Runs on a resolver thread, one answer at a time; must not block
    /// (post the answer somewhere and return).
    using Deliver = std::function<void(Answer)>;

    /// Lookups waiting beyond those in flight; request() refuses more.
    static constexpr size_t kMaxQueued = 1024;
    /// Threads, so one name stuck in DNS timeouts does not hold up all.
    static constexpr unsigned kThreads = 2;

    /// Starts the threads. Fails only when a thread cannot be created.
    [[nodiscard]] static Result<std::unique_ptr<NameResolver>> create(Deliver deliver);
    /// After it returns, `deliver` never runs again. Does not wait for
    /// lookups in flight: their threads finish alone and drop the answers.
    ~NameResolver();
    NameResolver(const NameResolver&) = delete;
    NameResolver& operator=(const NameResolver&) = delete;

    /// Any thread: looks `host` up and delivers an Answer with `id`. False
    /// (nothing delivered) when kMaxQueued lookups already wait.
    [[nodiscard]] bool request(uint64_t id, std::string host);

    struct State;
    struct Private {  // passkey: only create() constructs one
        explicit Private() = default;
    };
    NameResolver(Private /*key*/, std::shared_ptr<State> state) : state_(std::move(state)) {}

private:
    std::shared_ptr<State> state_;
};

}  // namespace sp::relay
