// SPDX-License-Identifier: Apache-2.0
// One backend's health as the active checks see it, with HAProxy's rise/fall
// semantics: a backend starts up; `fall` consecutive failures take it down;
// `rise` consecutive successes bring it back. Pure: check results in,
// transitions out; no sockets, no clock (agent/health_checker runs the
// checks and acts on the transitions).
#pragma once

#include <cstdint>
#include <string_view>

namespace sp::agent {

enum class HealthEvent : uint8_t {
    CheckOk,         // a check connect succeeded
    CheckFailed,     // a check connect was refused, timed out or unreachable
    PassiveFailure,  // a real session's connect to the backend failed
};

enum class HealthAction : uint8_t {
    None,
    BecameDown,  // stop sending sessions to the backend
    BecameUp,    // send sessions to it again
};

[[nodiscard]] std::string_view to_string(HealthEvent e) noexcept;
[[nodiscard]] std::string_view to_string(HealthAction a) noexcept;

class HealthState final {
public:
    /// `rise`, `fall`: at least 1 (config validation holds them to 1-100;
    /// 0 is taken as 1).
    HealthState(uint32_t rise, uint32_t fall) noexcept;

    /// Applies one event. A passive failure counts as a failed check: it
    /// moves an up backend towards down and restarts a down backend's rise
    /// count, but never takes it down by itself unless fall is 1.
    [[nodiscard]] HealthAction on(HealthEvent e) noexcept;

    [[nodiscard]] bool up() const noexcept { return up_; }
    /// The consecutive results towards the next transition: failures while
    /// up, successes while down. Right after a transition, the count that
    /// caused it (fall or rise), until the next event.
    [[nodiscard]] uint32_t streak() const noexcept { return streak_; }

private:
    uint32_t rise_;
    uint32_t fall_;
    bool up_ = true;
    uint32_t streak_ = 0;
    bool just_changed_ = false;
};

}  // namespace sp::agent
