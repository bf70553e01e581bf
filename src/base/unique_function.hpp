// SPDX-License-Identifier: Apache-2.0
// A move-only callable (C++23's std::move_only_function, which GCC 12 lacks
// in C++20 mode), so that work posted to another thread can own what it
// captures - a UniqueFd, a buffer - without the make_shared<UniqueFd> trick
// that std::function's copyability forces.
#pragma once

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
        : impl_(std::make_unique<Model<std::decay_t<F>>>(std::decay_t<F>(std::forward<F>(f)))) {}

    UniqueFunction(UniqueFunction&&) noexcept = default;
    UniqueFunction& operator=(UniqueFunction&&) noexcept = default;
    UniqueFunction(const UniqueFunction&) = delete;
    UniqueFunction& operator=(const UniqueFunction&) = delete;
    ~UniqueFunction() = default;

    [[nodiscard]] explicit operator bool() const noexcept { return impl_ != nullptr; }

    /// Calls the target. The caller must have checked that there is one.
    R operator()(Args... args) { return impl_->call(std::forward<Args>(args)...); }

private:
    struct Concept {
        virtual ~Concept() = default;
        virtual R call(Args... args) = 0;
    };
    template <class F>
    struct Model final : Concept {
        explicit Model(F f) : fn(std::move(f)) {}
        R call(Args... args) override { return fn(std::forward<Args>(args)...); }
        F fn;
    };
    std::unique_ptr<Concept> impl_;
};

}  // namespace sp
