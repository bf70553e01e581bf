// SPDX-License-Identifier: Apache-2.0
#include "base/events.hpp"

namespace sp::log {

static_assert(
    [] {
        for (size_t i = 0; i < kEvents.size(); ++i) {
            if (static_cast<size_t>(kEvents[i].id) != i) {
                return false;
            }
        }
        return true;
    }(),
    "kEvents must list every Ev in enum order");

void event(Ev e, std::initializer_list<Field> fields, std::string_view message) noexcept {
    event(spec(e).level, spec(e).name, fields, message);
}

void event(Level level, Ev e, std::initializer_list<Field> fields,
           std::string_view message) noexcept {
    event(level, spec(e).name, fields, message);
}

}  // namespace sp::log
