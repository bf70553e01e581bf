// SPDX-License-Identifier: Apache-2.0
// SessionTable: the single owner of a worker's sessions. A slab with a free
// list and a generation per slot; everyone else holds a SessionId, never a pointer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace sp::io {

struct SessionId {
    uint32_t slot = UINT32_MAX;
    uint16_t gen = 0;

    [[nodiscard]] bool valid() const noexcept { return slot != UINT32_MAX; }
    friend bool operator==(const SessionId&, const SessionId&) = default;
};

/// Not thread-safe: owned and used by one worker thread.
/// Storage is a std::deque (a chunked vector): emplace never moves existing
/// values, so a T& held by a callback stays valid while that callback opens
/// another session.
template <typename T>
class SessionTable final {
public:
    /// Constructs a T in a free slot (reusing freed slots first) and returns its id.
    template <typename... Args>
    SessionId emplace(Args&&... args) {
        uint32_t slot;
        if (!free_.empty()) {
            slot = free_.back();
            free_.pop_back();
        } else {
            slot = static_cast<uint32_t>(slots_.size());
            slots_.emplace_back();
        }
        Slot& s = slots_[slot];
        s.value.emplace(std::forward<Args>(args)...);
        ++live_;
        return SessionId{slot, s.gen};
    }

    /// The live value for `id`, or nullptr when the slot is free or its
    /// generation moved on (the id is stale).
    [[nodiscard]] T* get(SessionId id) noexcept { return lookup(*this, id); }
    [[nodiscard]] const T* get(SessionId id) const noexcept { return lookup(*this, id); }

    /// Destroys the value and bumps the slot's generation so every id and
    /// in-flight tag naming it becomes stale. Returns false if `id` was stale.
    bool erase(SessionId id) noexcept {
        if (get(id) == nullptr) {
            return false;
        }
        Slot& s = slots_[id.slot];
        s.value.reset();
        ++s.gen;
        free_.push_back(id.slot);
        --live_;
        return true;
    }

    [[nodiscard]] size_t size() const noexcept { return live_; }
    [[nodiscard]] size_t capacity() const noexcept { return slots_.size(); }

    /// Calls fn(SessionId, T&) for each live value. fn must not emplace or erase.
    template <typename Fn>
    void for_each(Fn&& fn) {
        for (uint32_t i = 0; i < slots_.size(); ++i) {
            if (slots_[i].value) {
                fn(SessionId{i, slots_[i].gen}, *slots_[i].value);
            }
        }
    }

    /// The ids of all live values (a snapshot, safe to use while erasing).
    [[nodiscard]] std::vector<SessionId> ids() const {
        std::vector<SessionId> out;
        out.reserve(live_);
        for (uint32_t i = 0; i < slots_.size(); ++i) {
            if (slots_[i].value) {
                out.push_back(SessionId{i, slots_[i].gen});
            }
        }
        return out;
    }

private:
    template <typename Self>
    static auto* lookup(Self& self, SessionId id) noexcept {
        using Value = std::conditional_t<std::is_const_v<Self>, const T, T>;
        if (id.slot >= self.slots_.size()) {
            return static_cast<Value*>(nullptr);
        }
        auto& s = self.slots_[id.slot];
        if (s.gen != id.gen || !s.value) {
            return static_cast<Value*>(nullptr);
        }
        return static_cast<Value*>(&*s.value);
    }

    struct Slot {
        std::optional<T> value;
        uint16_t gen = 0;
    };
    std::deque<Slot> slots_;
    std::vector<uint32_t> free_;
    size_t live_ = 0;
};

}  // namespace sp::io
