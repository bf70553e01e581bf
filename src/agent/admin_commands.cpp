// SPDX-License-Identifier: Apache-2.0
#include "agent/admin_commands.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include <fmt/format.h>

#include "admin/session_filter.hpp"
#include "agent/metrics.hpp"
#include "base/addr.hpp"

namespace sp::agent {

namespace {

using admin::Json;
using Steady = std::chrono::steady_clock;

template <class T>
std::vector<T> append(std::vector<T> acc, std::vector<T> part) {
    acc.insert(acc.end(), std::make_move_iterator(part.begin()),
               std::make_move_iterator(part.end()));
    return acc;
}

Json or_null(const std::string& s) {
    return s.empty() ? Json() : Json(s);
}

void register_sessions(daemon::Shell& shell, io::Sharded<Shard>& shards) {
    shell.admin().register_async(
        "sessions",
        [&shell, &shards](const admin::Args& args, daemon::Reply reply) {
            auto filter = admin::parse_session_filter(args);
            if (!filter) {
                reply.fail(filter.error());
                return;
            }
            shards.map_reduce(
                shell,
                [f = *filter](Shard& s, io::Worker& w) {
                    auto rows = s.sessions(w);
                    std::erase_if(rows, [&f](const SessionRow& r) {
                        return !f.matches(r.service, r.client.ip());
                    });
                    return rows;
                },
                std::vector<SessionRow>{}, append<SessionRow>,
                [rp = std::move(reply)](std::vector<SessionRow> rows) mutable {
                    std::sort(rows.begin(), rows.end(),
                              [](const SessionRow& a, const SessionRow& b) { return a.id < b.id; });
                    const auto now = Steady::now();
                    Json list = Json::array();
                    for (const auto& r : rows) {
                        list.push_back({
                            {"id", fmt::format("{:016x}", r.id)},
                            {"client", r.client.to_string()},
                            {"service", r.service},
                            {"backend", r.backend},
                            {"relay", r.relay},
                            {"age_s",
                             std::chrono::duration_cast<std::chrono::seconds>(now - r.start)
                                 .count()},
                            {"up_bytes", r.up_bytes},
                            {"down_bytes", r.down_bytes},
                        });
                    }
                    rp.ok(Json{{"sessions", std::move(list)}});
                });
        },
        "the established sessions: id, client, service, backend, relay, age, bytes");
}

void register_services(daemon::Shell& shell, io::Sharded<Shard>& shards, AgentView& view) {
    shell.admin().register_async(
        "services",
        [&shell, &shards, &view](const admin::Args& args, daemon::Reply reply) {
            if (auto r = args.only({}); !r) {
                reply.fail(r.error());
                return;
            }
            using Key = std::pair<std::string, size_t>;
            using Merged = std::map<Key, BackendRow>;
            shards.map_reduce(
                shell,
                [](Shard& s, io::Worker& /*w*/) {
                    Merged part;
                    for (auto& row : s.backends()) {
                        Key k{row.service, row.index};
                        part.emplace(std::move(k), std::move(row));
                    }
                    return part;
                },
                Merged{},
                [](Merged acc, const Merged& part) {
                    for (const auto& [k, row] : part) {
                        auto [it, fresh] = acc.try_emplace(k, row);
                        if (!fresh) {
                            // Any worker that skips it makes it unhealthy.
                            it->second.healthy = it->second.healthy && row.healthy;
                            if (std::string_view(row.check) == "down") {
                                it->second.check = row.check;
                            }
                            it->second.sessions += row.sessions;
                        }
                    }
                    return acc;
                },
                [rp = std::move(reply), &view](const Merged& rows) mutable {
                    Json list = Json::array();
                    for (const auto& svc : view.agent_config().services) {
                        Json listen = Json::array();
                        for (const auto& l : svc.listen) {
                            listen.push_back(l.to_string());
                        }
                        Json backends = Json::array();
                        uint64_t sessions = 0;
                        for (size_t i = 0; i < svc.backend.size(); ++i) {
                            const auto it = rows.find(Key{svc.name, i});
                            const bool healthy = it == rows.end() || it->second.healthy;
                            const char* check = it == rows.end() ? "off" : it->second.check;
                            const uint64_t n = it == rows.end() ? 0 : it->second.sessions;
                            sessions += n;
                            backends.push_back({{"address", svc.backend[i].to_string()},
                                                {"healthy", healthy},
                                                {"check", check},
                                                {"sessions", n}});
                        }
                        list.push_back({{"name", svc.name},
                                        {"listen", std::move(listen)},
                                        {"backends", std::move(backends)},
                                        {"sessions", sessions}});
                    }
                    rp.ok(Json{{"services", std::move(list)}});
                });
        },
        "the services: listen addresses, backends with health and sessions");
}

void register_relays(daemon::Shell& shell, io::Sharded<Shard>& shards, AgentView& view) {
    shell.admin().register_async(
        "relays",
        [&shell, &shards, &view](const admin::Args& args, daemon::Reply reply) {
            if (auto r = args.only({}); !r) {
                reply.fail(r.error());
                return;
            }
            using Idle = std::map<LinkId, size_t>;
            shards.map_reduce(
                shell, [](Shard& s, io::Worker& /*w*/) { return s.idle_by_link(); }, Idle{},
                [](Idle acc, const Idle& part) {
                    for (const auto& [link, n] : part) {
                        acc[link] += n;
                    }
                    return acc;
                },
                [rp = std::move(reply), &view](const Idle& idle) mutable {
                    Json list = Json::array();
                    for (const auto& [id, st] : view.links()) {
                        const auto it = idle.find(id);
                        Json rtt;
                        if (st.rtt) {
                            rtt = static_cast<double>(st.rtt->count()) / 1000.0;
                        }
                        list.push_back({
                            {"address", st.address},
                            {"state", control::to_string(st.state)},
                            {"since", admin::format_time(st.since)},
                            {"rtt_ms", std::move(rtt)},
                            {"last_error", or_null(st.last_error)},
                            {"pool_idle", it == idle.end() ? 0 : it->second},
                            {"pool_target", view.agent_config().agent.pool},
                            {"standby", st.standby},
                        });
                    }
                    rp.ok(Json{{"relays", std::move(list)}});
                });
        },
        "the relays: state, since, round-trip time, last error, pool");
}

void register_drain(daemon::Shell& shell, AgentView& view) {
    const auto set = [&view](bool on) {
        return [&view, on](const admin::Args& args) -> admin::Outcome<Json> {
            if (auto r = args.only({}); !r) {
                return tl::unexpected(r.error());
            }
            view.set_draining(on);
            return Json{{"draining", view.draining()}};
        };
    };
    shell.admin().register_command(
        "drain", set(true),
        "relays send this agent no new sessions while another agent serves the service");
    shell.admin().register_command("resume", set(false), "undo drain: take new sessions again");
}

void register_status(daemon::Shell& shell, io::Sharded<Shard>& shards, AgentView& view) {
    shell.admin().add_status([&shell, &shards, &view](UniqueFunction<void(Json)> done) {
        shards.map_reduce(
            shell, [](Shard& s, io::Worker& w) { return s.totals(w); }, SessionTotals{},
            [](SessionTotals acc, const SessionTotals& t) {
                acc.open += t.open;
                acc.started += t.started;
                acc.up_bytes += t.up_bytes;
                acc.down_bytes += t.down_bytes;
                return acc;
            },
            [d = std::move(done), &view](const SessionTotals& t) mutable {
                const auto links = view.links();
                const auto up = std::count_if(links.begin(), links.end(), [](const auto& l) {
                    return l.second.state == control::LinkState::Ready;
                });
                d(Json{
                    {"name", view.agent_config().agent.name},
                    {"relays", links.size()},
                    {"relays_up", up},
                    {"services", view.agent_config().services.size()},
                    {"sessions", t.open},
                    {"sessions_total", t.started},
                    {"up_bytes", t.up_bytes},
                    {"down_bytes", t.down_bytes},
                });
            });
    });
}

void register_metrics(daemon::Shell& shell, io::Sharded<Shard>& shards, AgentView& view) {
    // Not Shell::add_sharded_metrics: the open sessions' bytes come from
    // the worker (session_progress), which that helper does not pass.
    shell.admin().add_metrics([&shell, &shards](UniqueFunction<void(obs::MetricSet)> done) {
        shards.map_reduce(
            shell, [](Shard& s, io::Worker& w) { return s.snapshot_metrics(w); }, obs::MetricSet{},
            [](obs::MetricSet acc, const obs::MetricSet& part) {
                acc.merge(part);
                return acc;
            },
            std::move(done));
    });
    shell.admin().add_metrics_fields([&view](obs::MetricSet& set) {
        set.declare(metrics::kRelayUp);
        set.declare(metrics::kRelayRtt);
        for (const auto& [id, st] : view.links()) {
            set.set(metrics::kRelayUp, {st.address},
                    st.state == control::LinkState::Ready ? 1.0 : 0.0);
            if (st.rtt) {
                set.set(metrics::kRelayRtt, {st.address},
                        std::chrono::duration<double>(*st.rtt).count());
            }
        }
    });
}

}  // namespace

void register_admin(daemon::Shell& shell, io::Sharded<Shard>& shards, AgentView& view) {
    register_status(shell, shards, view);
    register_relays(shell, shards, view);
    register_services(shell, shards, view);
    register_sessions(shell, shards);
    register_drain(shell, view);
    register_metrics(shell, shards, view);
}

}  // namespace sp::agent
