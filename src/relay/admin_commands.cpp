// SPDX-License-Identifier: Apache-2.0
#include "relay/admin_commands.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "base/events.hpp"
#include "relay/metrics.hpp"
#include "relay/session_events.hpp"

namespace sp::relay {

using admin::ErrorCode;
using admin::Json;

namespace {

ShardReport add_reports(ShardReport acc, const ShardReport& part) {
    acc.merge(part);
    return acc;
}

/// Seconds as documents give them: to the millisecond.
double round_ms(double s) {
    return std::round(s * 1000) / 1000;
}

/// The wall-clock time of a steady-clock instant in the past, for `since`.
std::string wall_time(std::chrono::steady_clock::time_point then) {
    const auto ago = std::chrono::steady_clock::now() - then;
    return admin::format_time(std::chrono::system_clock::now() -
                              std::chrono::duration_cast<std::chrono::system_clock::duration>(ago));
}

template <class T>
Json or_null(const std::optional<T>& v) {
    return v ? Json(*v) : Json();
}

}  // namespace

std::optional<double> tcp_rtt_ms(int fd) noexcept {
    if (fd < 0) {
        return std::nullopt;
    }
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || ti.tcpi_rtt == 0) {
        return std::nullopt;
    }
    return ti.tcpi_rtt / 1000.0;  // microseconds
}

AdminCommands::AdminCommands(daemon::Shell& shell, io::Sharded<Shard>& shards, const Agents& agents,
                             const Listeners& listeners)
    : shell_(shell), shards_(shards), agents_(agents), listeners_(listeners) {}

admin::Outcome<SessionFilter> AdminCommands::session_filter(const admin::Args& args) {
    return admin::parse_session_filter(args);
}

admin::Outcome<uint64_t> AdminCommands::session_id(const admin::Args& args) {
    if (auto r = args.only({"id"}); !r) {
        return tl::unexpected(r.error());
    }
    auto text = args.required_string("id");
    if (!text) {
        return tl::unexpected(text.error());
    }
    const auto id = parse_session_hex(*text);
    if (!id) {
        return admin::fail(ErrorCode::BadArgs,
                           "argument \"id\" is not a SESSION_ID (1 to 16 hex digits)");
    }
    return *id;
}

void AdminCommands::install() {
    daemon::Admin& adm = shell_.admin();
    adm.add_status([this](UniqueFunction<void(Json)> done) { status(std::move(done)); });
    adm.add_metrics(
        [this](UniqueFunction<void(obs::MetricSet)> done) { metrics(std::move(done)); });
    adm.add_metrics_fields([this](obs::MetricSet& set) { control_metrics(set); });
    // Commands without arguments refuse any, as the generic ones do.
    const auto plain = [](auto run) {
        return [run](const admin::Args& args, daemon::Reply reply) {
            if (auto r = args.only({}); !r) {
                reply.fail(r.error());
                return;
            }
            run(std::move(reply));
        };
    };
    adm.register_async(
        "agents", plain([this](daemon::Reply r) { agents(std::move(r)); }),
        "the connected agents: key, address, since, round trip, pool, sessions, generation");
    adm.register_async(
        "listeners", plain([this](daemon::Reply r) { listeners(std::move(r)); }),
        "the public listeners: service, agents, sessions, accepts, refusals by reason");
    adm.register_async(
        "sessions",
        [this](const admin::Args& args, daemon::Reply reply) {
            auto f = session_filter(args);
            if (!f) {
                reply.fail(f.error());
                return;
            }
            sessions(*f, std::move(reply));
        },
        "the open sessions, optionally of one service or client network");
    adm.register_async(
        "close",
        [this](const admin::Args& args, daemon::Reply reply) {
            auto id = session_id(args);
            if (!id) {
                reply.fail(id.error());
                return;
            }
            close(*id, std::move(reply));
        },
        "end one session (REASON=operator)");
    adm.register_async("drain",
                       plain([this](daemon::Reply r) { set_draining(true, std::move(r)); }),
                       "refuse new clients (REASON=draining); established sessions go on");
    adm.register_async("resume",
                       plain([this](daemon::Reply r) { set_draining(false, std::move(r)); }),
                       "accept new clients again");
}

void AdminCommands::gather(UniqueFunction<void(ShardReport)> done) {
    shards_.map_reduce(
        shell_, [](Shard& s, io::Worker& w) { return s.report(w); }, ShardReport{}, &add_reports,
        std::move(done));
}

void AdminCommands::status(UniqueFunction<void(Json)> done) {
    gather([this, d = std::move(done)](const ShardReport& r) mutable {
        d(Json{{"agents", agents_.ready_count()},
               {"listeners", listeners_.count()},
               {"sessions", r.sessions},
               {"up_bytes", r.up_bytes},
               {"down_bytes", r.down_bytes}});
    });
}

void AdminCommands::agents(daemon::Reply reply) {
    gather([this, rp = std::move(reply)](const ShardReport& r) mutable {
        Json rows = Json::array();
        for (const AgentSession* s : agents_.ready_sessions()) {
            const auto pool = r.pools.find(s->id());
            const bool pooled = pool != r.pools.end();
            const auto open = r.agent_sessions.find(s->name());
            rows.push_back(Json{
                {"name", s->name()},
                {"key_id", s->identity()},
                {"address", s->address().to_string()},
                {"since", wall_time(s->ready_at())},
                {"rtt_ms", or_null(tcp_rtt_ms(s->fd()))},
                {"pool_idle", pooled ? pool->second.idle : uint64_t{0}},
                {"pool_target", pooled ? pool->second.target : uint64_t{0}},
                {"sessions", open == r.agent_sessions.end() ? uint64_t{0} : open->second},
                {"config_generation", or_null(listeners_.generation(s->id()))},
            });
        }
        rp.ok(Json{{"agents", std::move(rows)}});
    });
}

void AdminCommands::listeners(daemon::Reply reply) {
    gather([this, rp = std::move(reply)](const ShardReport& r) mutable {
        std::map<uint64_t, std::string> names;
        for (const AgentSession* s : agents_.ready_sessions()) {
            names[s->id()] = s->name();
        }
        Json rows = Json::array();
        for (const auto& [address, service] : listeners_.addresses()) {
            Json serving = Json::array();
            for (const uint64_t id : listeners_.agents_of(service)) {
                if (const auto it = names.find(id); it != names.end()) {
                    serving.push_back(it->second);
                }
            }
            Json refusals = Json::object();
            uint64_t sessions = 0;
            uint64_t accepts = 0;
            if (const auto load = r.listeners.find(address); load != r.listeners.end()) {
                sessions = load->second.sessions;
                accepts = load->second.accepts;
                for (const auto& [reason, n] : load->second.refusals) {
                    refusals[reason] = n;
                }
            }
            rows.push_back(Json{
                {"address", address},
                {"service", service},
                {"agents", std::move(serving)},
                {"state", draining_ ? "draining" : "open"},
                {"sessions", sessions},
                {"accepts", accepts},
                {"refusals", std::move(refusals)},
            });
        }
        rp.ok(Json{{"listeners", std::move(rows)}});
    });
}

void AdminCommands::sessions(const SessionFilter& filter, daemon::Reply reply) {
    shards_.map_reduce(
        shell_, [filter](Shard& s, io::Worker& w) { return s.sessions(w, filter); },
        std::vector<SessionRow>{},
        [](std::vector<SessionRow> acc, std::vector<SessionRow> part) {
            acc.insert(acc.end(), std::make_move_iterator(part.begin()),
                       std::make_move_iterator(part.end()));
            return acc;
        },
        [rp = std::move(reply)](std::vector<SessionRow> rows) mutable {
            // Oldest first, then by id: a stable order whatever worker
            // answered first.
            std::sort(rows.begin(), rows.end(), [](const SessionRow& a, const SessionRow& b) {
                return a.age_s != b.age_s ? a.age_s > b.age_s : a.id < b.id;
            });
            Json list = Json::array();
            for (const auto& row : rows) {
                list.push_back(Json{
                    {"id", session_hex(row.id)},
                    {"client", row.client},
                    {"service", row.service},
                    {"agent", row.agent},
                    {"age_s", round_ms(row.age_s)},
                    {"up_bytes", row.up_bytes},
                    {"down_bytes", row.down_bytes},
                });
            }
            rp.ok(Json{{"sessions", std::move(list)}});
        });
}

void AdminCommands::close(uint64_t id, daemon::Reply reply) {
    // Every worker looks: only the one holding the session has it. Its
    // session-close event (REASON=operator) is the log of this command.
    shards_.map_reduce(
        shell_, [id](Shard& s, io::Worker& w) { return s.close_session(w, id); }, false,
        [](bool acc, bool part) { return acc || part; },
        [id, rp = std::move(reply)](bool closed) mutable {
            if (closed) {
                rp.ok(Json{{"closed", session_hex(id)}});
            } else {
                rp.fail(ErrorCode::NotFound, fmt::format("no open session {}", session_hex(id)));
            }
        });
}

void AdminCommands::set_draining(bool on, daemon::Reply reply) {
    draining_ = on;
    shell_.admin().set_draining(on);
    shards_.map_reduce(
        shell_,
        [on](Shard& s, io::Worker& /*w*/) {
            s.set_draining(on);
            return true;
        },
        true, [](bool acc, bool /*part*/) { return acc; },
        [on, rp = std::move(reply)](bool /*all*/) mutable {
            // Logged once every worker applied it: from here on the
            // journal's account of refusals matches what clients see.
            if (on) {
                log::event(log::Ev::RelayDrain, {},
                           "drained by the operator: new clients are refused (client-rejected "
                           "REASON=draining); established sessions go on");
            } else {
                log::event(log::Ev::RelayResume, {},
                           "resumed by the operator: new clients are served again");
            }
            rp.ok(Json{{"draining", on}});
        });
}

void AdminCommands::metrics(UniqueFunction<void(obs::MetricSet)> done) {
    shards_.map_reduce(
        shell_, [](Shard& s, io::Worker& w) { return s.metrics(w); }, obs::MetricSet{},
        [](obs::MetricSet acc, const obs::MetricSet& part) {
            acc.merge(part);
            return acc;
        },
        std::move(done));
}

void AdminCommands::control_metrics(obs::MetricSet& set) const {
    const auto ready = agents_.ready_sessions();
    set.set(metric::kAgentsConnected, {}, static_cast<double>(ready.size()));
    set.set(metric::kListenersOpen, {}, static_cast<double>(listeners_.count()));
    for (const AgentSession* s : ready) {
        if (const auto rtt = tcp_rtt_ms(s->fd())) {
            set.set(metric::kControlRtt, {s->name()}, *rtt / 1000);
        }
    }
}

}  // namespace sp::relay
