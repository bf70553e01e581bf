// SPDX-License-Identifier: Apache-2.0
#include "fixture.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "admin/client.hpp"

namespace sp::test {

namespace {

// Set when the running test case has a failed assertion, so a Deployment
// going out of scope prints its daemons' last lines: a flaky failure on a
// CI machine is then diagnosable from the CI log alone.
std::atomic<bool> g_case_failed{false};

struct FailureWatch : doctest::IReporter {
    explicit FailureWatch(const doctest::ContextOptions& /*unused*/) {}
    void report_query(const doctest::QueryData& /*unused*/) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats& /*unused*/) override {}
    void test_case_start(const doctest::TestCaseData& /*unused*/) override {
        g_case_failed = false;
    }
    void test_case_reenter(const doctest::TestCaseData& /*unused*/) override {}
    void test_case_end(const doctest::CurrentTestCaseStats& /*unused*/) override {}
    void test_case_exception(const doctest::TestCaseException& /*unused*/) override {
        g_case_failed = true;
    }
    void subcase_start(const doctest::SubcaseSignature& /*unused*/) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData& a) override {
        if (a.m_failed) {
            g_case_failed = true;
        }
    }
    void log_message(const doctest::MessageData& /*unused*/) override {}
    void test_case_skipped(const doctest::TestCaseData& /*unused*/) override {}
};

REGISTER_LISTENER("sp-failure-watch", 1, FailureWatch);

void print_tail(const char* who, const std::string& out) {
    constexpr size_t kTail = 6000;
    std::fprintf(stderr, "---- %s log, last %zu bytes ----\n%s\n---- end of %s log ----\n", who,
                 std::min(out.size(), kTail),
                 out.substr(out.size() > kTail ? out.size() - kTail : 0).c_str(), who);
}

}  // namespace

std::optional<admin::Json> Deployment::relay_query(const std::string& cmd,
                                                   const admin::Json& args) const {
    admin::Request req{cmd, args.is_object() ? args : admin::Json::object()};
    auto r = admin::call(relay_socket(), req, std::chrono::seconds(5));
    if (!r || !r->ok) {
        return std::nullopt;
    }
    return std::move(r->data);
}

bool Deployment::wait_relay(const std::string& cmd,
                            const std::function<bool(const admin::Json&)>& done,
                            std::chrono::milliseconds timeout) const {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (int i = 0; i < 100000; ++i) {
        if (const auto data = relay_query(cmd); data && done(*data)) {
            return true;
        }
        if (std::chrono::steady_clock::now() >= until) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
}

bool Deployment::wait_relay_sessions(uint64_t n, std::chrono::milliseconds timeout) const {
    return wait_relay(
        "status",
        [n](const admin::Json& d) {
            return d.contains("sessions") && d["sessions"].is_number_unsigned() &&
                   d["sessions"].get<uint64_t>() == n;
        },
        timeout);
}

bool Deployment::wait_relay_listener(const std::string& service,
                                     std::chrono::milliseconds timeout) const {
    return wait_relay(
        "listeners",
        [&service](const admin::Json& d) {
            if (!d.contains("listeners") || !d["listeners"].is_array()) {
                return false;
            }
            return std::any_of(d["listeners"].begin(), d["listeners"].end(),
                               [&](const admin::Json& l) {
                                   return l.contains("service") && l["service"] == service;
                               });
        },
        timeout);
}

std::string relay_bin() {
    return SP_RELAY_BIN;
}
std::string agent_bin() {
    return SP_AGENT_BIN;
}

Deployment::Deployment() : control_port(free_port()) {
    if (const char* dp = std::getenv("SP_TEST_DATA_PATH"); dp != nullptr) {
        data_path = dp;
    }
}

Deployment::~Deployment() {
    if (g_case_failed) {
        if (relay.pid() > 0) {
            print_tail("relay", relay.output());
        }
        if (agent.pid() > 0) {
            print_tail("agent", agent.output());
        }
    }
    // A daemon that does not exit 0 on SIGTERM crashed or leaked (ASan aborts
    // with a non-zero status): that fails the test, whatever it checked.
    for (auto* p : {&agent, &relay}) {
        if (p->pid() <= 0) {
            continue;
        }
        const bool was_running = p->running();
        const auto status = p->stop();
        if (was_running && status != 0) {
            const std::string out = p->output();
            FAIL_CHECK("daemon exited with status "
                       << status.value_or(-1) << "; log tail:\n"
                       << out.substr(out.size() > 4000 ? out.size() - 4000 : 0));
        }
    }
}

void Deployment::make_keys(const std::vector<std::string>& names) {
    std::string all;
    for (const auto& n : names) {
        const auto r = run({relay_bin(), "--gen-key", n}, std::chrono::seconds(10));
        dir.write(n + ".key", r.output, 0600);
        all += r.output;
    }
    dir.write("relay.keys", all, 0600);
}

std::string Deployment::agent_key(const std::string& name) {
    return dir.path() + "/" + name + ".key";
}

std::string Deployment::write_relay_config(const std::string& extra) {
    return dir.write("relay.toml", fmt::format(R"([relay]
threads = 2
data_path = "{}"
control_listen = ["127.0.0.1:{}"]
allow_listen = ["127.0.0.1:1024-65535", "[::1]:1024-65535"]
status_socket = "{}/relay.sock"
drain_timeout_s = 5
{}
[auth]
keys = "{}/relay.keys"
{}
[limits]
listener_grace_ms = {}
{}
)",
                                               data_path, control_port, dir.path(), relay_extra,
                                               dir.path(), extra, listener_grace_ms, limits_extra));
}

std::string Deployment::write_agent_config(const std::string& name, const std::string& services,
                                           unsigned pool, const std::string& key_name,
                                           const std::string& file) {
    // The status socket is named after the file, not the agent: two agents
    // may share a name (identity tests), never a live socket path.
    const std::string stem = file.substr(0, file.rfind(".toml"));
    return dir.write(file, fmt::format(R"([agent]
name = "{}"
status_socket = "{}/{}.sock"
pool = {}
threads = 2
data_path = "{}"
{}
[[relay]]
address = "127.0.0.1:{}"
key = "{}"

{}
)",
                                       name, dir.path(), stem, pool, data_path, agent_extra,
                                       control_port, agent_key(key_name), services));
}

void Deployment::start_relay(const std::string& extra) {
    const auto cfg = write_relay_config(extra);
    std::vector<std::string> argv = relay_prefix;
    for (const auto& a : {relay_bin(), std::string("-c"), cfg, std::string("--log-target"),
                          std::string("stderr")}) {
        argv.push_back(a);
    }
    relay = Process::start(argv, dir.path() + "/relay.log");
}

Process Deployment::start_agent_process(const std::string& config_path, const std::string& log) {
    return Process::start({agent_bin(), "-c", config_path, "--log-target", "stderr"},
                          dir.path() + "/" + log);
}

void Deployment::start_agent(const std::string& services, unsigned pool) {
    const auto cfg = write_agent_config("agent1", services, pool);
    agent = start_agent_process(cfg, "agent.log");
}

std::string Deployment::service(const std::string& name, const std::string& listen,
                                const std::string& backend, const std::string& extra) {
    // Tests count the connections their backends see: no health checks
    // unless `extra` sets them.
    const bool checks = extra.find("check_") != std::string::npos;
    return fmt::format("[[service]]\nname = \"{}\"\nlisten = [\"{}\"]\nbackend = [\"{}\"]\n{}\n{}",
                       name, listen, backend, extra,
                       checks ? "" : "health_check_interval_ms = 0\n");
}

std::string exchange(uint16_t port, const std::string& payload) {
    auto fd = connect_to("127.0.0.1", port);
    if (!fd) {
        return "<connect failed>";
    }
    if (!send_all(fd.get(), payload.data(), payload.size())) {
        return "<send failed>";
    }
    ::shutdown(fd.get(), SHUT_WR);
    return recv_all(fd.get());
}

}  // namespace sp::test
