// SPDX-License-Identifier: Apache-2.0
// Name resolution off every thread that runs a loop: getaddrinfo(3) blocks
// for as long as DNS takes, so it runs on a thread of its own. Answers are
// handed to a callback; the agent caches them and publishes them to the
// relay links and to the shards by message.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/addr.hpp"
#include "base/result.hpp"

namespace sp::agent {

class Resolver final {
public:
    struct Answer {
        std::string host;
        std::optional<IpAddress> ip;  // the first address getaddrinfo gave
        std::string error;            // when !ip: gai_strerror text
    };
    /// Runs on the resolver thread, one answer at a time; must not block
    /// (post the answer somewhere and return).
    using Deliver = std::function<void(Answer)>;

    /// Starts the thread. Fails only when a thread cannot be created.
    [[nodiscard]] static Result<std::unique_ptr<Resolver>> create(Deliver deliver);
    /// After it returns, `deliver` never runs again. Does not wait for a
    /// lookup in flight: the thread finishes it alone and drops the answer.
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    /// Any thread: looks `host` up (a name; literals need no lookup). A
    /// host already queued is not queued twice: one answer serves all.
    void request(const std::string& host);

    struct State;
    struct Private {  // passkey: only create() constructs one
        explicit Private() = default;
    };
    Resolver(Private /*key*/, std::shared_ptr<State> state) : state_(std::move(state)) {}

private:
    std::shared_ptr<State> state_;
};

}  // namespace sp::agent
