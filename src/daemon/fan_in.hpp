// SPDX-License-Identifier: Apache-2.0
// fan_in: asks several asynchronous sources for a part each and folds the
// parts into one answer - how the status and metrics commands gather what
// the shell and the relay or agent contribute. Control thread only.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/unique_function.hpp"

namespace sp::daemon {

/// A source answers by calling its completion once, on the control thread,
/// now or later. A completion destroyed uncalled counts as an answer with
/// nothing in it, so the fold still finishes.
template <class R>
using Source = std::function<void(UniqueFunction<void(R)> done)>;

namespace detail {

template <class R, class Fold>
struct FanIn {
    R acc;
    Fold fold;
    UniqueFunction<void(R)> done;
    size_t left = 0;

    void finish_one() {
        if (--left == 0) {
            done(std::move(acc));
        }
    }
};

template <class R, class Fold>
class FanInPart final {
public:
    explicit FanInPart(std::shared_ptr<FanIn<R, Fold>> st) noexcept : st_(std::move(st)) {}
    FanInPart(FanInPart&& o) noexcept = default;
    FanInPart& operator=(FanInPart&&) = delete;
    FanInPart(const FanInPart&) = delete;
    FanInPart& operator=(const FanInPart&) = delete;
    ~FanInPart() {
        if (st_) {
            std::exchange(st_, nullptr)->finish_one();
        }
    }
    void operator()(R part) {
        if (!st_) {
            return;  // answered twice: the first one counted
        }
        auto st = std::exchange(st_, nullptr);
        st->acc = st->fold(std::move(st->acc), std::move(part));
        st->finish_one();
    }

private:
    std::shared_ptr<FanIn<R, Fold>> st_;
};

}  // namespace detail

/// Calls every source; folds the parts as `acc = fold(std::move(acc),
/// std::move(part))` from `init`, in the order they answer; then calls
/// `done(acc)` once. With no source, `done(init)` runs before this returns.
template <class R, class Fold>
void fan_in(const std::vector<Source<R>>& sources, R init, Fold fold,
            std::type_identity_t<UniqueFunction<void(R)>> done) {
    if (sources.empty()) {
        done(std::move(init));
        return;
    }
    auto st = std::make_shared<detail::FanIn<R, Fold>>(
        detail::FanIn<R, Fold>{std::move(init), std::move(fold), std::move(done), sources.size()});
    for (const auto& source : sources) {
        source(UniqueFunction<void(R)>(detail::FanInPart<R, Fold>(st)));
    }
}

}  // namespace sp::daemon
