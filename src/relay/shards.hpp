// SPDX-License-Identifier: Apache-2.0
// One T per worker, each used only on its worker's thread; the control
// thread reaches a shard only by message. A stand-in with the shape of the
// lead's io::Sharded<T> (Seastar's sharded<>) until that lands on main.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "io/worker.hpp"

namespace sp::relay {

template <class T>
class Shards final {
public:
    Shards() = default;
    Shards(const Shards&) = delete;
    Shards& operator=(const Shards&) = delete;

    /// Builds one T per worker on the calling thread (`make(index)` returns a
    /// std::unique_ptr<T>), before the workers run. The shards must outlive
    /// the workers' threads: posted functions hold a T&.
    template <class Make>
    void start(std::span<const std::unique_ptr<io::Worker>> workers, Make&& make) {
        workers_.clear();
        shards_.clear();
        for (unsigned i = 0; i < workers.size(); ++i) {
            workers_.push_back(workers[i].get());
            shards_.push_back(make(i));
        }
    }

    [[nodiscard]] size_t size() const noexcept { return shards_.size(); }

    /// Any thread: runs fn(shard, worker) on worker `shard`'s thread, in
    /// posting order. Dropped unrun once that worker's loop has exited.
    void invoke_on(unsigned shard, std::function<void(T&, io::Worker&)> fn) {
        workers_[shard]->post(
            [t = shards_[shard].get(), f = std::move(fn)](io::Worker& w) { f(*t, w); });
    }

    /// Any thread: runs a copy of fn on every shard's thread.
    void invoke_on_all(const std::function<void(T&, io::Worker&)>& fn) {
        for (unsigned i = 0; i < shards_.size(); ++i) {
            workers_[i]->post([t = shards_[i].get(), fn](io::Worker& w) { fn(*t, w); });
        }
    }

    /// The shard itself, for the thread that owns it.
    [[nodiscard]] T& local(unsigned shard) noexcept { return *shards_[shard]; }

private:
    std::vector<io::Worker*> workers_;
    std::vector<std::unique_ptr<T>> shards_;
};

}  // namespace sp::relay
