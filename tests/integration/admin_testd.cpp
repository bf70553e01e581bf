// SPDX-License-Identifier: Apache-2.0
// sallyport-admin-testd: a daemon::Shell with fake commands, for the status
// socket and metrics endpoint tests. It runs the real shell (workers, the
// control loop, signals) with nothing on the data plane.
//   --socket PATH  [--metrics HOST:PORT] [--threads N] [--max-clients N]
//   [--request-timeout-ms N] [--answer-timeout-ms N] [--write-timeout-ms N]
//   [--reload-fails]
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "admin/args.hpp"
#include "daemon/shell.hpp"
#include "io/sharded.hpp"
#include "obs/metrics.hpp"

using namespace sp;
using admin::Json;
using namespace std::chrono_literals;

namespace {

constexpr std::array<std::string_view, 1> kService = {"service"};
constexpr obs::Family kSessions{"sallyport_sessions_total", "Sessions opened.", obs::Kind::Counter,
                                kService};
constexpr obs::Family kSetup{"sallyport_session_setup_seconds",
                             "From accept to a paired data channel.", obs::Kind::Histogram,
                             kService, obs::kLatencyBuckets};
constexpr obs::Family kControl{"sallyport_test_control_value",
                               "A gauge kept on the control thread.", obs::Kind::Gauge};

struct FakeShard {
    unsigned index = 0;
    obs::MetricSet metrics;
};

struct Flags {
    std::string socket;
    std::optional<SocketAddress> metrics;
    unsigned threads = 2;
    bool reload_fails = false;
    daemon::AdminLimits limits;
};

bool parse_ms(const char* s, std::chrono::milliseconds& out) {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(s, s + std::strlen(s), v);
    out = std::chrono::milliseconds(v);
    return ec == std::errc() && *p == '\0';
}

std::optional<Flags> parse(int argc, char** argv) {
    Flags f;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        if (a == "--reload-fails") {
            f.reload_fails = true;
            continue;
        }
        if (v == nullptr) {
            return std::nullopt;
        }
        ++i;
        std::chrono::milliseconds ms{};
        if (a == "--socket") {
            f.socket = v;
        } else if (a == "--metrics") {
            auto addr = SocketAddress::parse(v);
            if (!addr) {
                return std::nullopt;
            }
            f.metrics = *addr;
        } else if (a == "--threads") {
            f.threads = static_cast<unsigned>(std::atoi(v));
        } else if (a == "--max-clients") {
            f.limits.max_clients = static_cast<size_t>(std::atoi(v));
        } else if (a == "--request-timeout-ms" && parse_ms(v, ms)) {
            f.limits.request_timeout = ms;
        } else if (a == "--answer-timeout-ms" && parse_ms(v, ms)) {
            f.limits.answer_timeout = ms;
        } else if (a == "--write-timeout-ms" && parse_ms(v, ms)) {
            f.limits.write_timeout = ms;
        } else {
            return std::nullopt;
        }
    }
    return f;
}

void register_fakes(daemon::Shell& shell, io::Sharded<FakeShard>& shards,
                    std::vector<daemon::Reply>& held, const Flags& flags, int& reloads) {
    auto& adm = shell.admin();
    adm.register_command("echo",
                         [](const admin::Args& a) -> admin::Outcome<Json> { return a.json(); });
    adm.register_command(
        "sessions",
        [](const admin::Args& a) -> admin::Outcome<Json> {
            if (auto r = a.only({"service", "client"}); !r) {
                return tl::unexpected(r.error());
            }
            Json rows = Json::array();
            rows.push_back(Json{{"id", "5f0c9a2e7b1d4c38"},
                                {"client", "203.0.113.9:5123"},
                                {"service", "sftp"},
                                {"agent", "mft-1"},
                                {"age_s", 192},
                                {"up_bytes", 1572864},
                                {"down_bytes", 348160}});
            rows.push_back(Json{{"id", "5f0c9a2e7b1d4c39"},
                                {"client", "[2001:db8::7]:40000"},
                                {"service", "https"},
                                {"agent", "mft-2"},
                                {"age_s", 7500},
                                {"up_bytes", 12},
                                {"down_bytes", 5368709120ULL}});
            return Json{{"sessions", std::move(rows)}};
        },
        "fake sessions");
    adm.register_command("big", [](const admin::Args& a) -> admin::Outcome<Json> {
        auto n = a.uint("bytes");
        if (!n) {
            return tl::unexpected(n.error());
        }
        return Json{{"blob", std::string(n->value_or(1024), 'x')}};
    });
    adm.register_async("shards", [&shell, &shards](const admin::Args&, daemon::Reply reply) {
        shards.map_reduce(
            shell,
            [](FakeShard& s, io::Worker& w) {
                return Json::array({Json{{"index", s.index},
                                         {"worker", w.index()},
                                         {"tid", static_cast<long>(::syscall(SYS_gettid))}}});
            },
            Json::array(),
            [](Json acc, Json part) {
                for (auto& e : part) {
                    acc.push_back(std::move(e));
                }
                return acc;
            },
            [r = std::move(reply)](Json all) mutable {
                r.ok(Json{{"shards", std::move(all)}, {"home_tid", ::getpid()}});
            });
    });
    adm.register_async(
        "hang", [&held](const admin::Args&, daemon::Reply r) { held.push_back(std::move(r)); });
    adm.set_reload([&flags, &reloads]() -> Result<void> {
        ++reloads;
        if (flags.reload_fails) {
            return Unexpected(Error{ErrorKind::Config, 0, "must be at most 1024", "/etc/x.toml", 3,
                                    11, "relay.threads"});
        }
        return {};
    });
    adm.add_status_fields([&reloads](Json& j) { j["reloads"] = reloads; });
    adm.add_metrics_fields([](obs::MetricSet& m) { m.set(kControl, {}, 7); });
    shell.add_sharded_metrics(shards, [](FakeShard& s) { return s.metrics; });
}

}  // namespace

int main(int argc, char** argv) {
    const auto flags = parse(argc, argv);
    if (!flags || flags->socket.empty()) {
        std::fprintf(stderr, "usage: sallyport-admin-testd --socket PATH [options]\n");
        return 2;
    }
    auto shell = daemon::Shell::create(flags->threads, io::DataPath::Splice);
    if (!shell) {
        std::fprintf(stderr, "shell: %s\n", shell.error().describe().c_str());
        return 1;
    }
    daemon::Shell& sh = **shell;
    io::Sharded<FakeShard> shards;
    shards.start(sh.workers(), [](unsigned i) {
        auto s = std::make_unique<FakeShard>();
        s->index = i;
        s->metrics.add(kSessions, {"sftp"}, i + 1);
        s->metrics.observe(kSetup, {"sftp"}, 0.002 * (i + 1));
        return s;
    });
    std::vector<daemon::Reply> held;
    int reloads = 0;
    register_fakes(sh, shards, held, *flags, reloads);
    sh.set_hooks({[] {}, [&sh] { sh.begin_drain(0s); }, [] {}, [] { return uint64_t{0}; }, {}, {}});
    if (auto r = sh.enable_admin(flags->socket, flags->metrics, flags->limits); !r) {
        std::fprintf(stderr, "sallyport-admin-testd: %s\n", r.error().describe().c_str());
        return 1;
    }
    std::fprintf(stderr, "ready\n");
    (void)sh.run();
    held.clear();
    return 0;
}
