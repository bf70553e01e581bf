// SPDX-License-Identifier: Apache-2.0
// A move-only callable (C++23's std::move_only_function, which GCC 12 lacks
// in C++20 mode), so that work posted to another thread can own what it
// captures - a UniqueFd, a buffer - without the make_shared<UniqueFd> trick
// that std::function's copyability forces.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

namespace sp {

template <class Sig>
class UniqueFunction;

template <class R, class... Args>
class UniqueFunction<R(Args...)> final {
public:
    UniqueFunction() noexcept = default;
    UniqueFunction(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor)

    /// Takes any callable invocable as R(Args...); it is moved into the heap
    /// once and never copied.
    template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, UniqueFunction> &&
             std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
        // The requires clause keeps this from hiding the move constructor; clang-tidy 14 does
        // not see through it.
        // NOLINTNEXTLINE(google-explicit-constructor,bugprone-forwarding-reference-overload)
        UniqueFunction(F&& f)
        : target_(
              new std::decay_t<F>(std::forward<F>(f))),  // NOLINT(cppcoreguidelines-owning-memory)
          call_(&call_target<std::decay_t<F>>),
          destroy_(&destroy_target<std::decay_t<F>>) {}

    UniqueFunction(UniqueFunction&& o) noexcept
        : target_(std::exchange(o.target_, nullptr)),
          call_(std::exchange(o.call_, nullptr)),
          destroy_(std::exchange(o.destroy_, nullptr)) {}
    UniqueFunction& operator=(UniqueFunction&& o) noexcept {
        if (this != &o) {
            reset();
            target_ = std::exchange(o.target_, nullptr);
            call_ = std::exchange(o.call_, nullptr);
            destroy_ = std::exchange(o.destroy_, nullptr);
        }
        return *this;
    }
    UniqueFunction(const UniqueFunction&) = delete;
    UniqueFunction& operator=(const UniqueFunction&) = delete;
    ~UniqueFunction() { reset(); }

    [[nodiscard]] explicit operator bool() const noexcept { return target_ != nullptr; }

    /// Calls the target. The caller must have checked that there is one.
    R operator()(Args... args) { return call_(target_, std::forward<Args>(args)...); }

private:
    // Dispatch through plain function pointers rather than a virtual base,
    // as libstdc++'s std::function does: UBSan's vptr check (clang 14) needs
    // a free fd to validate a virtual call, so at EMFILE - exactly when a
    // daemon must keep running posted work - it reported valid calls as bad.
    template <class F>
    static R call_target(void* t, Args... args) {
        return (*static_cast<F*>(t))(std::forward<Args>(args)...);
    }
    template <class F>
    static void destroy_target(void* t) noexcept {
        std::unique_ptr<F>(static_cast<F*>(t)).reset();  // the owner of what call_target uses
    }
    void reset() noexcept {
        if (target_ != nullptr) {
            destroy_(target_);
            target_ = nullptr;
        }
    }

    void* target_ = nullptr;
    R (*call_)(void*, Args...) = nullptr;
    void (*destroy_)(void*) noexcept = nullptr;
};

}  // namespace sp
