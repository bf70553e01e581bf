// SPDX-License-Identifier: Apache-2.0
#include "agent/health_state.hpp"

#include <algorithm>

namespace sp::agent {

std::string_view to_string(HealthEvent e) noexcept {
    switch (e) {
        case HealthEvent::CheckOk:
            return "check-ok";
        case HealthEvent::CheckFailed:
            return "check-failed";
        case HealthEvent::PassiveFailure:
            return "passive-failure";
    }
    return "?";
}

std::string_view to_string(HealthAction a) noexcept {
    switch (a) {
        case HealthAction::None:
            return "none";
        case HealthAction::BecameDown:
            return "became-down";
        case HealthAction::BecameUp:
            return "became-up";
    }
    return "?";
}

HealthState::HealthState(uint32_t rise, uint32_t fall) noexcept
    : rise_(std::max<uint32_t>(1, rise)), fall_(std::max<uint32_t>(1, fall)) {}

HealthAction HealthState::on(HealthEvent e) noexcept {
    if (just_changed_) {
        // The count that caused the transition was reported; the new state
        // counts from zero.
        streak_ = 0;
        just_changed_ = false;
    }
    const bool ok = e == HealthEvent::CheckOk;
    if (up_) {
        if (ok) {
            streak_ = 0;
            return HealthAction::None;
        }
        if (++streak_ < fall_) {
            return HealthAction::None;
        }
        up_ = false;
        just_changed_ = true;
        return HealthAction::BecameDown;
    }
    if (!ok) {
        streak_ = 0;
        return HealthAction::None;
    }
    if (++streak_ < rise_) {
        return HealthAction::None;
    }
    up_ = true;
    just_changed_ = true;
    return HealthAction::BecameUp;
}

}  // namespace sp::agent
