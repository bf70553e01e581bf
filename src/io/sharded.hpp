// SPDX-License-Identifier: Apache-2.0
// Sharded<T>: one T per worker, each used only on its worker's thread
// (Seastar's sharded<>). The control thread reaches a shard only by message,
// written once here instead of a hand-rolled `workers[i]->post(...)` loop at
// every call site. map_reduce gathers one value from every shard back onto
// the control thread (status snapshots, metrics).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/unique_function.hpp"
#include "io/worker.hpp"

namespace sp::io {

namespace detail {

/// What map_reduce folds on the home thread; touched only there.
template <class R, class Reduce>
struct Gather {
    R acc;
    Reduce reduce;
    UniqueFunction<void(R)> done;
    size_t left = 0;

    void count_one() {
        if (--left == 0) {
            done(std::move(acc));
        }
    }
};

/// One shard's promise to answer: carried by the function posted to the
/// shard's worker. If that function is destroyed unrun (the worker's loop
/// had exited), the destructor still counts the shard, so `done` runs once.
template <class R, class Reduce, class Home>
class GatherTicket final {
public:
    GatherTicket(std::shared_ptr<Gather<R, Reduce>> g, Home* home) noexcept
        : g_(std::move(g)), home_(home) {}
    GatherTicket(GatherTicket&& o) noexcept
        : g_(std::move(o.g_)), home_(o.home_), sent_(std::exchange(o.sent_, true)) {}
    GatherTicket& operator=(GatherTicket&&) = delete;
    GatherTicket(const GatherTicket&) = delete;
    GatherTicket& operator=(const GatherTicket&) = delete;
    ~GatherTicket() {
        if (!sent_ && g_) {
            home_->post([g = std::move(g_)] { g->count_one(); });
        }
    }

    /// Worker thread: sends `part` home, where it is folded into the result.
    void fulfil(R part) {
        sent_ = true;
        home_->post([g = std::move(g_), p = std::move(part)]() mutable {
            g->acc = g->reduce(std::move(g->acc), std::move(p));
            g->count_one();
        });
    }

private:
    std::shared_ptr<Gather<R, Reduce>> g_;
    Home* home_;
    bool sent_ = false;
};

}  // namespace detail

template <class T>
class Sharded final {
public:
    Sharded() = default;
    Sharded(const Sharded&) = delete;
    Sharded& operator=(const Sharded&) = delete;

    /// Builds one T per worker on the calling thread: `make(index)` returns a
    /// std::unique_ptr<T>. Call before the workers run, or make T's
    /// constructor touch nothing a worker uses. Borrows `workers`: they must
    /// outlive every invoke, and the shards must outlive the workers' threads
    /// (destroy this only after the workers were joined), since posted
    /// functions hold a T&.
    template <class Make>
    void start(std::span<Worker* const> workers, Make&& make) {
        workers_.assign(workers.begin(), workers.end());
        shards_.clear();
        for (unsigned i = 0; i < workers_.size(); ++i) {
            shards_.push_back(make(i));
        }
    }

    [[nodiscard]] size_t size() const noexcept { return shards_.size(); }

    /// Any thread: runs fn(shard, worker) on worker `shard`'s thread, in
    /// posting order. Dropped unrun once that worker's loop has exited.
    void invoke_on(unsigned shard, UniqueFunction<void(T&, Worker&)> fn) {
        workers_[shard]->post(
            [t = shards_[shard].get(), f = std::move(fn)](Worker& w) mutable { f(*t, w); });
    }

    /// Any thread: runs a copy of fn on every shard's thread.
    void invoke_on_all(const std::function<void(T&, Worker&)>& fn) {
        for (unsigned i = 0; i < shards_.size(); ++i) {
            workers_[i]->post([t = shards_[i].get(), fn](Worker& w) { fn(*t, w); });
        }
    }

    /// Gathers one value from every shard (Seastar's map_reduce). On each
    /// shard's thread, `map(shard, worker)` computes an R (a snapshot: it
    /// must touch only its shard and copy what it returns). Each result is
    /// posted to `home` - anything with post(UniqueFunction<void()>), such as
    /// io::Inbox or daemon::Shell - and folded there as
    /// `acc = reduce(std::move(acc), std::move(part))`, starting from `init`,
    /// in the order shards answer. When every shard has answered,
    /// `done(acc)` runs once on home's thread; with no shard it is posted at
    /// once. A shard whose worker has stopped contributes nothing but is
    /// counted when the function queued for it is destroyed (with the
    /// Worker, at the latest). Any thread may call this; `map` is copied once per shard and
    /// runs on several threads at the same time. `home` must outlive the
    /// workers (their queued functions post to it when destroyed).
    template <class R, class Home, class Map, class Reduce>
    void map_reduce(Home& home, Map map, R init, Reduce reduce,
                    std::type_identity_t<UniqueFunction<void(R)>> done) {
        auto g = std::make_shared<detail::Gather<R, Reduce>>(detail::Gather<R, Reduce>{
            std::move(init), std::move(reduce), std::move(done), shards_.size()});
        if (shards_.empty()) {
            home.post([g] { g->done(std::move(g->acc)); });
            return;
        }
        for (unsigned i = 0; i < shards_.size(); ++i) {
            workers_[i]->post([t = shards_[i].get(), map,
                               ticket = detail::GatherTicket<R, Reduce, Home>(g, &home)](
                                  Worker& w) mutable { ticket.fulfil(map(*t, w)); });
        }
    }

    /// The shard object itself, for the thread that owns it (its worker, or
    /// the control thread before the workers start and after they stopped).
    [[nodiscard]] T& local(unsigned shard) noexcept { return *shards_[shard]; }

private:
    std::vector<Worker*> workers_;
    std::vector<std::unique_ptr<T>> shards_;
};

}  // namespace sp::io
