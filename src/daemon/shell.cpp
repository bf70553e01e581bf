// SPDX-License-Identifier: Apache-2.0
#include "daemon/shell.hpp"

#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>

#include <algorithm>
#include <thread>

#include "base/event.hpp"
#include "base/events.hpp"
#include "base/notify.hpp"
#include "base/signals.hpp"
#include "io/pipe_pool.hpp"

namespace sp::daemon {

using io::DataPath;
using io::Worker;
using io::WorkerOptions;

using namespace std::chrono_literals;

io::DataPath io_data_path(config::DataPath path) noexcept {
    return path == config::DataPath::Copy ? io::DataPath::Copy : io::DataPath::Splice;
}

void Shell::set_data_path(io::DataPath path) {
    for (io::Worker* w : worker_ptrs_) {
        w->post([path](io::Worker& wk) { wk.set_data_path(path); });
    }
}

Result<std::unique_ptr<Shell>> Shell::create(unsigned threads, DataPath data_path) {
    auto d = std::make_unique<Shell>(Private{});
    auto sig = block_signals_to_fd({SIGHUP, SIGTERM, SIGINT, SIGUSR2});
    if (!sig) {
        return Unexpected(sig.error());
    }
    d->signal_fd_ = std::move(*sig);
    auto inherited = Inheritance::from_environment();
    if (!inherited) {
        return Unexpected(inherited.error());
    }
    d->inherited_ = std::move(*inherited);
    auto poller = Poller::create();
    if (!poller) {
        return Unexpected(poller.error());
    }
    d->poller_.emplace(std::move(*poller));
    auto inbox = io::Inbox::create();
    if (!inbox) {
        return Unexpected(inbox.error());
    }
    d->inbox_.emplace(std::move(*inbox));
    // glibc's short name of argv[0]: "sallyport-relay" as installed.
    d->admin_ = std::make_unique<Admin>(*d, program_invocation_short_name);
    Shell* self = d.get();
    if (auto r =
            d->poller_->add(d->inbox_->fd(), EPOLLIN, [self](uint32_t) { self->inbox_->drain(); });
        !r) {
        return Unexpected(r.error());
    }
    if (auto r = d->poller_->add(d->signal_fd_.get(), EPOLLIN,
                                 [self](uint32_t) {
                                     while (const int s = read_signal(self->signal_fd_.get())) {
                                         if (s == SIGUSR2) {
                                             self->start_upgrade();
                                             continue;
                                         }
                                         const auto& fn =
                                             s == SIGHUP ? self->hooks_.reload : self->hooks_.stop;
                                         if (fn) {
                                             fn();
                                         }
                                     }
                                 });
        !r) {
        return Unexpected(r.error());
    }
    if (threads == 0) {
        threads = std::max(1U, std::thread::hardware_concurrency());
    }
    for (unsigned i = 0; i < threads; ++i) {
        WorkerOptions wo;
        wo.index = i;
        wo.data_path = data_path;
        wo.max_pipes = io::pipe_cap_per_worker(threads, wo.pipe_size);
        wo.pipe_grow_pages = io::pipe_grow_pages_per_worker(threads);
        auto w = Worker::create(wo);
        if (!w) {
            return Unexpected(w.error());
        }
        d->worker_ptrs_.push_back(w->get());
        d->workers_.push_back(std::move(*w));
    }
    return d;
}

Shell::~Shell() {
    // Closed first: its handlers may name objects of the daemon, and its
    // socket path must go even when run() was never reached.
    admin_.reset();
    for (auto& w : workers_) {
        w->stop_now();
        w->join();
    }
}

void Shell::begin_drain(std::chrono::seconds timeout) {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    drain_deadline_ = Poller::Clock::now() + timeout;
    notify::stopping();
    for (auto& w : workers_) {
        w->request_stop();
    }
}

void Shell::status(const std::string& text) {
    if (text != last_status_) {
        notify::status(text);
        last_status_ = text;
    }
}

void Shell::start_upgrade() {
    if (stopping_ || upgrade_ || !hooks_.hand_over) {
        log::event(log::Level::Error, log::Ev::UpgradeFailed, {{"REASON", "busy"}},
                   stopping_ ? "upgrade refused: this process is draining"
                             : "upgrade refused: an upgrade is already under way");
        return;
    }
    auto sockets = hooks_.hand_over();
    auto admin = sockets ? admin_->hand_over() : Result<std::vector<HandedSocket>>{};
    if (!sockets || !admin) {
        const auto& e = !sockets ? sockets.error() : admin.error();
        log::event(log::Level::Error, log::Ev::UpgradeFailed, {{"REASON", "spawn"}},
                   fmt::format("upgrade failed, still serving: {}", e.describe()));
        return;
    }
    size_t fds = 0;
    for (auto& s : *admin) {
        sockets->push_back(std::move(s));
    }
    for (const auto& s : *sockets) {
        fds += s.fds.size();
    }
    const size_t count = sockets->size();
    auto p = Predecessor::start(
        *poller_, *sockets,
        {[this](pid_t child) {
             notify::hand_over_main_pid(child);
             log::event(log::Level::Notice, log::Ev::Upgrade, {{"REASON", "handed-over"}},
                        fmt::format("upgrade: pid {} is ready and serves new connections; this "
                                    "process stops accepting and drains",
                                    child));
             // Its socket file is the successor's now.
             admin_->stop_serving(true);
             if (hooks_.handed_over) {
                 hooks_.handed_over();
             }
         },
         // A failed attempt is forgotten (after its callback returned), so
         // the admin can fix what the log names and send SIGUSR2 again.
         [this] { post([this] { upgrade_.reset(); }); }},
        std::chrono::seconds(30));
    if (!p) {
        log::event(log::Level::Error, log::Ev::UpgradeFailed, {{"REASON", "spawn"}},
                   fmt::format("upgrade failed, still serving: {}", p.error().describe()));
        return;
    }
    upgrade_ = std::move(*p);
    log::event(log::Level::Notice, log::Ev::Upgrade, {{"REASON", "started"}},
               fmt::format("upgrade: started pid {} and handed it {} sockets ({} descriptors)",
                           upgrade_->pid(), count, fds));
}

Result<void> Shell::enable_admin(const std::string& status_socket,
                                 const std::optional<SocketAddress>& metrics_listen,
                                 AdminLimits limits) {
    // After a binary upgrade the sockets are the predecessor's, same path
    // and address; one the new configuration moved is bound afresh.
    std::optional<HandedSocket> status_fd;
    std::optional<HandedSocket> metrics_fd;
    if (inherited_) {
        status_fd = inherited_->take("status", status_socket);
        if (metrics_listen) {
            metrics_fd = inherited_->take("metrics", metrics_listen->to_string());
        }
    }
    const auto first = [](std::optional<HandedSocket>& s) {
        return s && !s->fds.empty() ? std::move(s->fds.front()) : UniqueFd{};
    };
    if (!status_socket.empty()) {
        if (auto r = admin_->open_socket(status_socket, limits, first(status_fd)); !r) {
            log::event(log::Ev::BindFailed,
                       {{"LISTEN_ADDR", status_socket}, {"REASON", r.error().describe()}},
                       fmt::format("cannot open the status socket: {}", r.error().describe()));
            return r;
        }
    }
    if (metrics_listen) {
        if (auto r = admin_->start_metrics_http(*metrics_listen, {}, first(metrics_fd)); !r) {
            const std::string addr = metrics_listen->to_string();
            log::event(log::Ev::BindFailed,
                       {{"LISTEN_ADDR", addr}, {"REASON", r.error().describe()}},
                       fmt::format("cannot serve metrics on {}: {}", addr, r.error().describe()));
            admin_->stop_serving();
            return r;
        }
    }
    return {};
}

bool Shell::run() {
    for (auto& w : workers_) {
        w->start();
    }
    if (inherited_) {
        // The workers accept on the inherited sockets now: the predecessor
        // may stop, and makes us the main PID before READY=1 below.
        inherited_->confirm_ready();
        inherited_.reset();
        log::event(log::Level::Notice, log::Ev::Upgrade, {{"REASON", "inherited"}},
                   "upgrade: serving on the sockets the old process handed over");
    }
    notify::ready();
    if (hooks_.tick) {
        hooks_.tick();
    }
    auto last_tick = Poller::Clock::now();
    const auto watchdog = notify::watchdog_interval();
    auto last_watchdog = last_tick;
    const auto live = [this] { return hooks_.live_sessions ? hooks_.live_sessions() : 0; };
    for (;;) {
        poller_->run_once(200ms);
        const auto now = Poller::Clock::now();
        if (now - last_tick >= 1s) {
            if (upgrade_) {
                (void)upgrade_->tick(std::chrono::steady_clock::now());
            }
            admin_->tick();
            if (hooks_.tick) {
                hooks_.tick();
            }
            last_tick = now;
        }
        // Pinged from this loop: if it stalls, systemd restarts us.
        if (watchdog && now - last_watchdog >= *watchdog) {
            notify::watchdog();
            last_watchdog = now;
        }
        if (stopping_ && (live() == 0 || now >= drain_deadline_)) {
            break;
        }
    }
    // Nothing is answered once the loop is gone: close the socket (removing
    // its path) and the metrics endpoint before the workers are joined.
    admin_->stop_serving();
    const bool forced = live() != 0;
    for (auto& w : workers_) {
        if (forced) {
            w->stop_now();
        }
        w->join();
    }
    // The workers stay (joined, taking no more posts) until the Shell goes:
    // shards and posted closures may still name them.
    return forced;
}

}  // namespace sp::daemon
