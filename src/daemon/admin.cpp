// SPDX-License-Identifier: Apache-2.0
#include "daemon/admin.hpp"

#include <unistd.h>

#include "config.h"
#include "obs/process.hpp"
#include "obs/prometheus.hpp"

namespace sp::daemon {

using admin::ErrorCode;
using admin::Json;

Admin::Admin(AdminHost& host, std::string program)
    : host_(host),
      program_(std::move(program)),
      started_wall_(std::chrono::system_clock::now()),
      started_(std::chrono::steady_clock::now()) {
    register_generic();
}

Admin::~Admin() {
    stop_serving();
}

void Admin::register_command(std::string name, CommandRegistry::Handler handler,
                             std::string summary) {
    commands_.register_command(std::move(name), std::move(handler), std::move(summary));
}

void Admin::register_async(std::string name, CommandRegistry::AsyncHandler handler,
                           std::string summary) {
    commands_.register_async(std::move(name), std::move(handler), std::move(summary));
}

void Admin::add_status_fields(std::function<void(Json& fields)> fill) {
    add_status([f = std::move(fill)](UniqueFunction<void(Json)> done) {
        Json fields = Json::object();
        f(fields);
        done(std::move(fields));
    });
}

void Admin::add_metrics_fields(std::function<void(obs::MetricSet& set)> fill) {
    add_metrics([f = std::move(fill)](UniqueFunction<void(obs::MetricSet)> done) {
        obs::MetricSet set;
        f(set);
        done(std::move(set));
    });
}

Result<void> Admin::open_socket(const std::string& path, AdminLimits limits, UniqueFd inherited) {
    auto s = AdminSocket::open(host_.poller(), commands_, path, limits, std::move(inherited));
    if (!s) {
        return Unexpected(s.error());
    }
    socket_ = std::move(*s);
    return {};
}

Result<void> Admin::start_metrics_http(const SocketAddress& addr, MetricsHttp::Limits limits,
                                       UniqueFd inherited) {
    auto h = MetricsHttp::start(
        addr, [host = &host_](UniqueFunction<void()> fn) { host->post(std::move(fn)); },
        [this](UniqueFunction<void(std::string)> done) {
            collect_metrics(
                [d = std::move(done)](const obs::MetricSet& set) mutable { d(obs::render(set)); });
        },
        limits, std::move(inherited));
    if (!h) {
        return Unexpected(h.error());
    }
    http_ = std::move(*h);
    return {};
}

Result<std::vector<HandedSocket>> Admin::hand_over() {
    std::vector<HandedSocket> out;
    if (socket_) {
        auto fd = socket_->hand_over();
        if (!fd) {
            return Unexpected(fd.error());
        }
        HandedSocket s{"status", socket_->path(), "", {}};
        s.fds.push_back(std::move(*fd));
        out.push_back(std::move(s));
    }
    if (http_) {
        auto fd = http_->hand_over();
        if (!fd) {
            return Unexpected(fd.error());
        }
        HandedSocket s{"metrics", http_->address().to_string(), "", {}};
        s.fds.push_back(std::move(*fd));
        out.push_back(std::move(s));
    }
    return out;
}

Result<void> Admin::move_socket(const std::string& path, AdminLimits limits) {
    const std::string now = socket_ ? socket_->path() : std::string();
    if (path == now) {
        return {};
    }
    std::unique_ptr<AdminSocket> fresh;
    if (!path.empty()) {
        auto s = AdminSocket::open(host_.poller(), commands_, path, limits);
        if (!s) {
            return Unexpected(s.error());
        }
        fresh = std::move(*s);
    }
    if (socket_) {
        socket_->stop_listening();
        retired_.push_back(std::move(socket_));
    }
    socket_ = std::move(fresh);
    return {};
}

Result<void> Admin::move_metrics_http(const std::optional<SocketAddress>& addr,
                                      MetricsHttp::Limits limits) {
    const std::optional<SocketAddress> now =
        http_ ? std::optional<SocketAddress>(http_->address()) : std::nullopt;
    if (addr == now) {
        return {};
    }
    if (!addr) {
        http_.reset();
        return {};
    }
    auto old = std::move(http_);
    if (auto r = start_metrics_http(*addr, limits); r) {
        return {};
    }
    // The new address may overlap the old one (0.0.0.0:9100 -> 10.0.0.1:9100):
    // free it first, and take the old one back if the new still fails.
    old.reset();
    if (auto r = start_metrics_http(*addr, limits); !r) {
        if (now) {
            (void)start_metrics_http(*now, limits);
        }
        return r;
    }
    return {};
}

void Admin::tick() {
    std::erase_if(retired_, [](const auto& s) { return s->clients() == 0; });
}

void Admin::stop_serving(bool leave_path) {
    retired_.clear();
    if (leave_path && socket_) {
        socket_->leave_path();
    }
    http_.reset();
    socket_.reset();
}

void Admin::collect_status(UniqueFunction<void(Json)> done) {
    Json doc = Json::object();
    doc["program"] = program_;
    doc["version"] = SP_VERSION;
    doc["pid"] = ::getpid();
    doc["started_at"] = admin::format_time(started_wall_);
    doc["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now() - started_)
                          .count();
    doc["workers"] = host_.worker_count();
    doc["draining"] = draining_ || host_.stopping();
    doc["stopping"] = host_.stopping();
    fan_in(
        status_sources_, std::move(doc),
        [](Json acc, const Json& part) {
            if (part.is_object()) {
                for (const auto& [key, value] : part.items()) {
                    acc[key] = value;
                }
            }
            return acc;
        },
        std::move(done));
}

void Admin::collect_metrics(UniqueFunction<void(obs::MetricSet)> done) {
    obs::MetricSet base;
    obs::add_process_metrics(base, {program_, SP_VERSION, started_wall_, host_.worker_count(),
                                    draining_ || host_.stopping()});
    fan_in(
        metrics_sources_, std::move(base),
        [](obs::MetricSet acc, const obs::MetricSet& part) {
            acc.merge(part);
            return acc;
        },
        std::move(done));
}

void Admin::register_generic() {
    commands_.register_command(
        "help",
        [this](const admin::Args& args) -> admin::Outcome<Json> {
            if (auto r = args.only({}); !r) {
                return tl::unexpected(r.error());
            }
            Json list = Json::array();
            for (const auto& [name, summary] : commands_.list()) {
                list.push_back(Json{{"name", name}, {"summary", summary}});
            }
            return Json{{"commands", std::move(list)}};
        },
        "the commands this daemon answers");
    commands_.register_async(
        "status",
        [this](const admin::Args& args, Reply reply) {
            if (auto r = args.only({}); !r) {
                reply.fail(r.error());
                return;
            }
            collect_status([rp = std::move(reply)](const Json& doc) mutable { rp.ok(doc); });
        },
        "what the daemon is and does: version, uptime, workers, draining, counts");
    commands_.register_command(
        "reload",
        [this](const admin::Args& args) -> admin::Outcome<Json> {
            if (auto r = args.only({}); !r) {
                return tl::unexpected(r.error());
            }
            if (!reload_) {
                host_.reload();
                return Json{{"result", "requested"}};
            }
            if (auto r = reload_(); !r) {
                return admin::fail(r.error().kind == ErrorKind::Config ? ErrorCode::ConfigRejected
                                                                       : ErrorCode::Failed,
                                   r.error().describe());
            }
            return Json{{"result", "applied"}};
        },
        "re-read the configuration, as SIGHUP, keeping sessions");
    commands_.register_async(
        "metrics",
        [this](const admin::Args& args, Reply reply) {
            if (auto r = args.only({}); !r) {
                reply.fail(r.error());
                return;
            }
            collect_metrics([rp = std::move(reply)](const obs::MetricSet& set) mutable {
                rp.ok(Json{{"content_type", obs::kContentType}, {"text", obs::render(set)}});
            });
        },
        "the Prometheus metrics, as GET /metrics serves them");
}

}  // namespace sp::daemon
