// SPDX-License-Identifier: Apache-2.0
#include "base/events.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/assert.hpp"

namespace sp::log {

namespace {

/// Calls `fn` on each space-separated word of `list`; stops early when it
/// returns false, and returns false then.
template <class Fn>
constexpr bool each_word(std::string_view list, Fn fn) {
    while (!list.empty()) {
        const size_t sp = list.find(' ');
        const std::string_view word = list.substr(0, sp);
        if (!word.empty() && !fn(word)) {
            return false;
        }
        list = sp == std::string_view::npos ? std::string_view() : list.substr(sp + 1);
    }
    return true;
}

constexpr bool in_list(std::string_view list, std::string_view name) {
    return !each_word(list, [name](std::string_view w) { return w != name; });
}

constexpr bool known_field(std::string_view name) {
    for (const auto k : f::kAll) {
        if (k == name) {
            return true;
        }
    }
    return false;
}

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

static_assert(
    [] {
        for (const auto& e : kEvents) {
            for (const auto list : {e.fields.must, e.fields.relay, e.fields.agent, e.fields.may}) {
                if (!each_word(list, known_field)) {
                    return false;
                }
            }
        }
        return true;
    }(),
    "kEvents names a field that is not in f::kAll (a typo?)");

std::atomic<uint8_t> g_side{static_cast<uint8_t>(Side::Both)};

void check(Ev e, std::initializer_list<Field> fields) {
#ifndef NDEBUG
    const auto side = static_cast<Side>(g_side.load(std::memory_order_relaxed));
    if (const std::string why = check_fields(e, side, fields); !why.empty()) {
        SP_BUG(why.c_str());
    }
#else
    (void)e;
    (void)fields;
#endif
}

}  // namespace

std::string errno_reason(int err) {
    err = err < 0 ? -err : err;
    if (err == ETIMEDOUT) {
        return "timeout";
    }
    if (const char* name = ::strerrorname_np(err)) {
        return name;
    }
    return fmt::format("errno-{}", err);
}

void set_side(Side side) noexcept {
    g_side.store(static_cast<uint8_t>(side), std::memory_order_relaxed);
}

std::string check_fields(Ev e, Side side, std::initializer_list<Field> fields) {
    const EventSpec& s = spec(e);
    const bool relay = side == Side::Relay || side == Side::Both;
    const bool agent = side == Side::Agent || side == Side::Both;
    std::string why;
    for (const auto& fl : fields) {
        if (fl.value.empty()) {
            continue;  // left out of the entry, as a field that does not apply
        }
        const bool allowed = in_list(s.fields.must, fl.name) || in_list(s.fields.may, fl.name) ||
                             (relay && in_list(s.fields.relay, fl.name)) ||
                             (agent && in_list(s.fields.agent, fl.name));
        if (!allowed) {
            why += fmt::format(" {} not allowed;", fl.name);
        }
    }
    const auto present = [&](std::string_view name) {
        for (const auto& fl : fields) {
            if (fl.name == name && !fl.value.empty()) {
                return true;
            }
        }
        return false;
    };
    const auto require = [&](std::string_view list) {
        each_word(list, [&](std::string_view name) {
            if (!present(name)) {
                why += fmt::format(" {} missing;", name);
            }
            return true;
        });
    };
    require(s.fields.must);
    // Unknown side: either daemon's list may apply, so neither is required.
    if (side == Side::Relay) {
        require(s.fields.relay);
    } else if (side == Side::Agent) {
        require(s.fields.agent);
    }
    if (why.empty()) {
        return why;
    }
    why.pop_back();
    return fmt::format("event {} breaks its kEvents row:{}", s.name, why);
}

void event(Ev e, std::initializer_list<Field> fields, std::string_view message) noexcept {
    event(spec(e).level, e, fields, message);
}

void event(Level level, Ev e, std::initializer_list<Field> fields,
           std::string_view message) noexcept {
    try {
        check(e, fields);
    } catch (...) {
        // Out of memory while describing a violation: the event still goes out.
    }
    event(level, spec(e).name, fields, message);
}

}  // namespace sp::log
