// SPDX-License-Identifier: Apache-2.0
// The optional Prometheus endpoint (metrics_listen): HTTP GET /metrics,
// served by libmicrohttpd on its own threads. It never touches the data
// plane or the control thread's state: each scrape posts a request for a
// snapshot to the control thread and waits for the text, with a timeout.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "base/unique_function.hpp"

struct MHD_Daemon;

namespace sp::daemon {

class MetricsHttp final {
    struct Private {  // passkey: only start() constructs one
        explicit Private() = default;
    };

public:
    /// Control thread: produces the exposition text, now or later, and hands
    /// it to `done` (on the control thread).
    using Scrape = std::function<void(UniqueFunction<void(std::string text)> done)>;
    /// Any thread: runs a function on the control thread.
    using Post = std::function<void(UniqueFunction<void()>)>;

    struct Limits {
        std::chrono::milliseconds scrape_timeout{5000};  // then 503
        unsigned max_connections = 8;
        unsigned connection_timeout_s = 10;  // idle HTTP connections are closed
    };

    /// Binds `addr` (a literal address; port 0 picks one) and starts serving:
    /// GET /metrics answers 200 with the text, any other path 404, any other
    /// method on /metrics 405, a scrape that takes longer than the timeout
    /// 503. Call on the control thread after every other thread's signal
    /// mask is set (the server's threads inherit the caller's).
    [[nodiscard]] static Result<std::unique_ptr<MetricsHttp>> start(const SocketAddress& addr,
                                                                    Post post, Scrape scrape,
                                                                    Limits limits,
                                                                    UniqueFd inherited = {});
    /// Binary upgrade: a duplicate of the listening socket for the successor.
    [[nodiscard]] Result<UniqueFd> hand_over() const;
    MetricsHttp(Private /*unused*/, Post post, Scrape scrape, Limits limits);
    MetricsHttp(const MetricsHttp&) = delete;
    MetricsHttp& operator=(const MetricsHttp&) = delete;
    /// Scrapes waiting for the control thread are answered 503 at once, then
    /// the server's threads are stopped and joined. Blocks until they are.
    ~MetricsHttp();

    /// The bound address (with the port the kernel chose for port 0).
    [[nodiscard]] const SocketAddress& address() const noexcept { return address_; }

    /// For the server's threads: asks the control thread for the text and
    /// waits up to the scrape timeout; nullopt on timeout or while stopping.
    [[nodiscard]] std::optional<std::string> scrape_blocking();

private:
    /// Shared with the completions posted to the control thread, which may
    /// run after this object is gone.
    struct Waiters {
        std::mutex mu;
        std::condition_variable cv;
        bool closing = false;  // guarded by mu
    };
    struct Answer {
        bool done = false;  // guarded by Waiters::mu
        std::string text;
    };

    struct StopServer {
        void operator()(MHD_Daemon* d) const noexcept;
    };

    Post post_;
    Scrape scrape_;
    Limits limits_;
    SocketAddress address_;
    int listen_fd_ = -1;  // owned by MHD (MHD_stop_daemon closes it)
    std::shared_ptr<Waiters> waiters_;
    std::unique_ptr<MHD_Daemon, StopServer> mhd_;
};

}  // namespace sp::daemon
