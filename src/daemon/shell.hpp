// SPDX-License-Identifier: Apache-2.0
// The process shell both daemons share: the control thread's poll loop with
// its once-a-second tick and the systemd watchdog, HUP/TERM/INT from a
// signalfd, an inbox other threads post to, the data-plane workers (sized to
// the CPUs and the pipe budget), the drain that ends the process, and the
// operator interface (status socket, metrics endpoint: daemon/admin.hpp).
// The relay and the agent plug in their behaviour through ShellHooks and
// their commands, status fields and metrics through admin().
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/addr.hpp"
#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "base/unique_function.hpp"
#include "config/common.hpp"
#include "daemon/admin.hpp"
#include "daemon/upgrade.hpp"
#include "io/inbox.hpp"
#include "io/sharded.hpp"
#include "io/worker.hpp"
#include "obs/metrics.hpp"

namespace sp::daemon {

/// The daemon's behaviour. All hooks run on the control thread.
struct ShellHooks {
    std::function<void()> reload;             // SIGHUP
    std::function<void()> stop;               // SIGTERM / SIGINT: call begin_drain()
    std::function<void()> tick;               // about once a second
    std::function<uint64_t()> live_sessions;  // the drain ends when this is 0
    /// SIGUSR2: the daemon's listening sockets for its successor (control
    /// port, public listeners, ...); the Shell adds the status socket and
    /// the metrics endpoint. Unset: no binary upgrade.
    std::function<Result<std::vector<HandedSocket>>()> hand_over;
    /// The successor is ready and is the main PID: stop accepting, drain.
    std::function<void()> handed_over;
};

/// The workers' data path for a file's data_path.
[[nodiscard]] io::DataPath io_data_path(config::DataPath path) noexcept;

class Shell final : public AdminHost {
public:
    /// Blocks HUP/TERM/INT/USR2 (call before any other thread starts),
    /// receives a predecessor's sockets when started by a binary upgrade,
    /// creates the poller and `threads` workers (0 = one per online CPU)
    /// with a pipe cap that keeps all of them within pipe-user-pages-soft.
    [[nodiscard]] static Result<std::unique_ptr<Shell>> create(unsigned threads,
                                                               io::DataPath data_path);
    Shell(const Shell&) = delete;
    Shell& operator=(const Shell&) = delete;
    /// Stops and joins the workers (closing their sessions) if run() did not.
    ~Shell() override;

    void set_hooks(ShellHooks hooks) { hooks_ = std::move(hooks); }
    /// The control thread's poller; control thread only.
    [[nodiscard]] Poller& poller() noexcept override { return *poller_; }
    /// The workers, borrowed: valid until the Shell is destroyed (after
    /// run() returns they have exited and take no more posts).
    [[nodiscard]] std::span<io::Worker* const> workers() const noexcept { return worker_ptrs_; }
    [[nodiscard]] bool stopping() const noexcept override { return stopping_; }

    /// Any thread: runs `fn` on the control thread, in posting order.
    void post(UniqueFunction<void()> fn) override { inbox_->post(std::move(fn)); }

    /// The operator interface: register commands, status fields and metrics
    /// here (control thread, before or during run()). It answers help,
    /// status, reload and metrics itself.
    [[nodiscard]] Admin& admin() noexcept { return *admin_; }

    /// Control thread, before run(): opens the status socket at
    /// `status_socket` ("" = none) and, when `metrics_listen` is set, the
    /// HTTP metrics endpoint; both are served from the control loop (the
    /// endpoint on its own threads) until run() ends, when the socket's path
    /// is removed. A failure (say, another live daemon holds the path) is
    /// logged as bind-failed and returned: the daemon should exit.
    [[nodiscard]] Result<void> enable_admin(const std::string& status_socket,
                                            const std::optional<SocketAddress>& metrics_listen,
                                            AdminLimits limits = {});

    /// Adds a metrics source that snapshots every shard of `shards` on its
    /// worker (`snapshot(T&)` returns a copy of that shard's obs::MetricSet)
    /// and merges the copies here. `shards` must outlive the Shell's run().
    template <class T, class Snapshot>
    void add_sharded_metrics(io::Sharded<T>& shards, Snapshot snapshot) {
        admin_->add_metrics([this, &shards, snapshot](UniqueFunction<void(obs::MetricSet)> done) {
            shards.map_reduce(
                *this, [snapshot](T& t, io::Worker& /*w*/) { return snapshot(t); },
                obs::MetricSet{},
                [](obs::MetricSet acc, const obs::MetricSet& part) {
                    acc.merge(part);
                    return acc;
                },
                std::move(done));
        });
    }

    /// Sockets handed over by the process this one upgrades; nullptr on an
    /// ordinary start. Take them before run().
    [[nodiscard]] Inheritance* inheritance() noexcept {
        return inherited_ ? &*inherited_ : nullptr;
    }

    /// Starts the workers (after an upgrade: tells the predecessor, which
    /// makes this process the main PID), sends READY=1 and runs until a
    /// drain finished.
    /// Returns true when sessions were still open at the drain deadline
    /// (they were closed then).
    bool run();

    /// Workers stop taking new work once their inbox has run; the loop ends
    /// when live_sessions() reaches 0 or `timeout` passes. Sends STOPPING=1.
    void begin_drain(std::chrono::seconds timeout);

    /// Control thread: every worker uses `path` for sessions that start
    /// from now on (a reload changed data_path); open ones keep theirs.
    void set_data_path(io::DataPath path);

    /// STATUS= for systemd, sent only when the text changed.
    void status(const std::string& text);

private:
    struct Private {  // passkey: only create() constructs one
        explicit Private() = default;
    };

    /// SIGUSR2: starts the binary at our path with our sockets.
    void start_upgrade();

    // AdminHost
    [[nodiscard]] unsigned worker_count() const noexcept override {
        return static_cast<unsigned>(workers_.size());
    }
    void reload() override {
        if (hooks_.reload) {
            hooks_.reload();
        }
    }

public:
    explicit Shell(Private /*unused*/) {}

private:
    std::optional<Poller> poller_;
    std::optional<io::Inbox> inbox_;
    UniqueFd signal_fd_;
    std::vector<std::unique_ptr<io::Worker>> workers_;
    std::vector<io::Worker*> worker_ptrs_;
    ShellHooks hooks_;
    bool stopping_ = false;
    Poller::Clock::time_point drain_deadline_{};
    std::string last_status_;
    std::unique_ptr<Admin> admin_;
    std::optional<Inheritance> inherited_;
    std::unique_ptr<Predecessor> upgrade_;
};

}  // namespace sp::daemon
