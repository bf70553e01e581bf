// SPDX-License-Identifier: Apache-2.0
// What both daemons' control threads share: the poll loop with its once-a-
// second tick and the systemd watchdog, HUP/TERM/INT from a signalfd, the
// data-plane workers (sized to the CPUs and the pipe budget), and the drain
// that ends the process. The relay and the agent plug in their behaviour.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "io/worker.hpp"

namespace sp::io {

struct DaemonHooks {
    std::function<void()> reload;             // SIGHUP
    std::function<void()> stop;               // SIGTERM / SIGINT: call begin_drain()
    std::function<void()> tick;               // about once a second
    std::function<uint64_t()> live_sessions;  // the drain ends when this is 0
};

class Daemon final {
public:
    /// Blocks HUP/TERM/INT (call before any other thread starts), creates
    /// the poller and `threads` workers (0 = one per online CPU) with a pipe
    /// cap that keeps all of them within pipe-user-pages-soft.
    [[nodiscard]] static Result<std::unique_ptr<Daemon>> create(unsigned threads,
                                                                DataPath data_path);
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    ~Daemon();

    void set_hooks(DaemonHooks hooks) { hooks_ = std::move(hooks); }
    [[nodiscard]] Poller& poller() noexcept { return *poller_; }
    [[nodiscard]] std::vector<std::unique_ptr<Worker>>& workers() noexcept { return workers_; }
    [[nodiscard]] bool stopping() const noexcept { return stopping_; }

    /// Starts the workers, sends READY=1 and runs until a drain finished.
    /// Returns true when sessions were still open at the drain deadline
    /// (they were closed then).
    bool run();

    /// Workers stop taking new work once their inbox has run; the loop ends
    /// when live_sessions() reaches 0 or `timeout` passes. Sends STOPPING=1.
    void begin_drain(std::chrono::seconds timeout);

    /// STATUS= for systemd, sent only when the text changed.
    void status(const std::string& text);

private:
    Daemon() = default;

    std::optional<Poller> poller_;
    UniqueFd signal_fd_;
    std::vector<std::unique_ptr<Worker>> workers_;
    DaemonHooks hooks_;
    bool stopping_ = false;
    Poller::Clock::time_point drain_deadline_{};
    std::string last_status_;
};

}  // namespace sp::io
