// SPDX-License-Identifier: Apache-2.0
// Sharded<T>: one T per worker, each used only on its worker's thread
// (Seastar's sharded<>). The control thread reaches a shard only by message,
// written once here instead of a hand-rolled `workers[i]->post(...)` loop at
// every call site.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "base/unique_function.hpp"
#include "io/worker.hpp"

namespace sp::io {

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

    /// The shard object itself, for the thread that owns it (its worker, or
    /// the control thread before the workers start and after they stopped).
    [[nodiscard]] T& local(unsigned shard) noexcept { return *shards_[shard]; }

private:
    std::vector<Worker*> workers_;
    std::vector<std::unique_ptr<T>> shards_;
};

}  // namespace sp::io
