// SPDX-License-Identifier: Apache-2.0
// A daemon's operator interface: the commands of its status socket, what
// `status` and `metrics` report, and the two ways to reach them (the unix
// socket, the optional HTTP endpoint). The shell owns one; the relay and
// the agent register their commands and add their status fields and
// metrics to it. Control thread only, unless a method says otherwise.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "admin/protocol.hpp"
#include "base/addr.hpp"
#include "base/poller.hpp"
#include "base/result.hpp"
#include "base/unique_function.hpp"
#include "daemon/admin_socket.hpp"
#include "daemon/commands.hpp"
#include "daemon/fan_in.hpp"
#include "daemon/metrics_http.hpp"
#include "daemon/upgrade.hpp"
#include "obs/metrics.hpp"

namespace sp::daemon {

/// What the operator interface needs from the process shell.
class AdminHost {
public:
    /// The control thread's loop, which serves the socket.
    [[nodiscard]] virtual Poller& poller() noexcept = 0;
    /// Any thread: runs `fn` on the control thread.
    virtual void post(UniqueFunction<void()> fn) = 0;
    [[nodiscard]] virtual unsigned worker_count() const noexcept = 0;
    /// True once the process is stopping (SIGTERM): it drains and exits.
    [[nodiscard]] virtual bool stopping() const noexcept = 0;
    /// The daemon's SIGHUP behaviour.
    virtual void reload() = 0;

protected:
    AdminHost() = default;
    AdminHost(const AdminHost&) = default;
    AdminHost& operator=(const AdminHost&) = default;
    virtual ~AdminHost() = default;
};

class Admin final {
public:
    /// Answers an object whose members are appended to `status`'s document.
    using StatusSource = Source<admin::Json>;
    /// Answers a MetricSet (a copy: gathered from the workers by
    /// io::Sharded::map_reduce, or built on the control thread).
    using MetricsSource = Source<obs::MetricSet>;

    /// Registers the generic commands: help, status, reload, metrics.
    /// `program` names the daemon in status and in sallyport_build_info.
    Admin(AdminHost& host, std::string program);
    Admin(const Admin&) = delete;
    Admin& operator=(const Admin&) = delete;
    /// Stops serving (stop_serving()).
    ~Admin();

    // --- what the daemon answers ---

    /// See CommandRegistry; replaces a command of the same name, generic
    /// ones included.
    void register_command(std::string name, CommandRegistry::Handler handler,
                          std::string summary = {});
    void register_async(std::string name, CommandRegistry::AsyncHandler handler,
                        std::string summary = {});
    [[nodiscard]] const CommandRegistry& commands() const noexcept { return commands_; }

    void add_status(StatusSource source) { status_sources_.push_back(std::move(source)); }
    /// A status source that answers at once.
    void add_status_fields(std::function<void(admin::Json& fields)> fill);
    void add_metrics(MetricsSource source) { metrics_sources_.push_back(std::move(source)); }
    /// A metrics source that answers at once (control-thread counters).
    void add_metrics_fields(std::function<void(obs::MetricSet& set)> fill);

    /// What `reload` runs: an Error of kind Config is answered
    /// config-rejected (sallyportctl exits 2), another kind failed. Without
    /// one, `reload` runs the host's reload hook and can only say it ran.
    void set_reload(std::function<Result<void>()> reload) { reload_ = std::move(reload); }

    /// The operator's drain (the daemon accepts no new sessions), as status
    /// and sallyport_draining report it; the relay or agent sets it from its
    /// drain and resume commands.
    void set_draining(bool on) noexcept { draining_ = on; }
    [[nodiscard]] bool draining() const noexcept { return draining_; }

    // --- serving ---

    /// Opens the status socket at `path` (AdminSocket::open).
    /// With `inherited` (binary upgrade), serves on that socket instead.
    [[nodiscard]] Result<void> open_socket(const std::string& path, AdminLimits limits = {},
                                           UniqueFd inherited = {});
    /// Starts the HTTP endpoint on `addr` (MetricsHttp::start).
    [[nodiscard]] Result<void> start_metrics_http(const SocketAddress& addr,
                                                  MetricsHttp::Limits limits = {},
                                                  UniqueFd inherited = {});
    /// Binary upgrade: duplicates of the status socket ("status") and the
    /// metrics endpoint's socket ("metrics") for the successor.
    [[nodiscard]] Result<std::vector<HandedSocket>> hand_over();
    /// Closes the socket (removing its path) and stops the HTTP endpoint.
    /// Answers still on their way are dropped.
    /// `leave_path`: the successor of a binary upgrade serves on the same
    /// socket file.
    void stop_serving(bool leave_path = false);

    /// Reload: serves the status socket at `path` from now on ("" = none).
    /// The old one stops listening at once (its path removed) but answers
    /// the clients it has, the sallyportctl that asked for the reload among
    /// them, and closes once they are gone (tick()). A path that cannot be
    /// opened is returned and the old socket stays.
    [[nodiscard]] Result<void> move_socket(const std::string& path, AdminLimits limits = {});
    /// Reload: the metrics endpoint on `addr` from now on (nullopt = none).
    /// An address that cannot be served is returned and the old one stays.
    [[nodiscard]] Result<void> move_metrics_http(const std::optional<SocketAddress>& addr,
                                                 MetricsHttp::Limits limits = {});
    /// About once a second: closes moved-away sockets with no client left.
    void tick();

    [[nodiscard]] const AdminSocket* socket() const noexcept { return socket_.get(); }
    [[nodiscard]] const MetricsHttp* metrics_http() const noexcept { return http_.get(); }

    // --- gathering ---

    /// The status document: program, version, pid, started_at, uptime_s,
    /// workers, draining, stopping, then every status source's members.
    void collect_status(UniqueFunction<void(admin::Json)> done);
    /// The process's metrics and every source's, merged.
    void collect_metrics(UniqueFunction<void(obs::MetricSet)> done);

private:
    void register_generic();

    AdminHost& host_;
    std::string program_;
    std::chrono::system_clock::time_point started_wall_;
    std::chrono::steady_clock::time_point started_;
    CommandRegistry commands_;
    std::vector<StatusSource> status_sources_;
    std::vector<MetricsSource> metrics_sources_;
    std::function<Result<void>()> reload_;
    bool draining_ = false;
    std::unique_ptr<AdminSocket> socket_;
    std::vector<std::unique_ptr<AdminSocket>> retired_;  // moved away, clients left
    std::unique_ptr<MetricsHttp> http_;
};

}  // namespace sp::daemon
