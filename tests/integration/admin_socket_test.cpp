// SPDX-License-Identifier: Apache-2.0
// The daemon shell's status socket and metrics endpoint, end to end: a test
// program runs a real daemon::Shell (workers, control loop, signals) with
// fake commands; clients are sallyportctl, admin::call and raw sockets.
// Every wait is bounded.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "admin/client.hpp"
#include "admin/protocol.hpp"
#include "net.hpp"
#include "proc.hpp"

using namespace sp;
using namespace sp::test;
using admin::ErrorCode;
using admin::Json;
using namespace std::chrono_literals;

namespace {

struct Daemon {
    Process proc;
    std::string socket;
};

/// Starts the test daemon on `socket`; waits (bounded) until it serves.
Daemon start(const TempDir& dir, const std::string& socket, std::vector<std::string> extra = {},
             const std::string& log = "testd.log") {
    std::vector<std::string> argv = {SP_ADMIN_TESTD, "--socket", socket};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Daemon d{Process::start(argv, dir.path() + "/" + log), socket};
    REQUIRE_MESSAGE(d.proc.wait_for_output("ready", 10s), d.proc.output());
    return d;
}

admin::Request req(const std::string& cmd, Json args = Json::object()) {
    admin::Request r;
    r.cmd = cmd;
    r.args = std::move(args);
    return r;
}

admin::Response call(const std::string& socket, const std::string& cmd,
                     Json args = Json::object()) {
    auto r = admin::call(socket, req(cmd, std::move(args)), 5s);
    REQUIRE_MESSAGE(r, (r ? "" : r.error().describe()));
    return *r;
}

UniqueFd connect_unix(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.data(), path.size());
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
        return UniqueFd();
    }
    return fd;
}

/// Reads until EOF, `limit` bytes, or `timeout` without data.
std::string read_until_eof(int fd, std::chrono::milliseconds timeout, bool& eof,
                           size_t limit = SIZE_MAX) {
    std::string out;
    eof = false;
    char buf[65536];
    while (out.size() < limit) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) {
            return out;
        }
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            eof = true;
            return out;
        }
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

admin::Response first_answer(const std::string& text) {
    const auto nl = text.find('\n');
    REQUIRE(nl != std::string::npos);
    auto r = admin::decode_response(text.substr(0, nl + 1));
    REQUIRE(r);
    return *r;
}

RunResult ctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SP_CTL_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, 20s);
}

/// One HTTP/1.0 exchange on 127.0.0.1:port; the whole response.
std::string http(uint16_t port, const std::string& request) {
    auto fd = connect_to("127.0.0.1", port);
    REQUIRE(fd);
    set_timeouts(fd.get(), 10s);
    REQUIRE(send_all(fd.get(), request.data(), request.size()));
    return recv_all(fd.get(), 16 << 20);
}

}  // namespace

TEST_SUITE("integration.admin_socket") {
    TEST_CASE("status socket: generic and registered commands, map_reduce across the workers") {
        TempDir dir;
        auto d = start(dir, dir.path() + "/admin.sock");
        struct stat st {};
        REQUIRE(::stat(d.socket.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0660);
        CHECK(st.st_gid == ::getegid());

        auto status = call(d.socket, "status");
        REQUIRE(status.ok);
        CHECK(status.data["program"] == "sallyport-admin-testd");
        CHECK(status.data["pid"] == d.proc.pid());
        CHECK(status.data["workers"] == 2);
        CHECK(status.data["draining"] == false);
        CHECK(status.data["stopping"] == false);
        CHECK(status.data["reloads"] == 0);
        CHECK(status.data["started_at"].get<std::string>().ends_with("Z"));

        auto help = call(d.socket, "help");
        REQUIRE(help.ok);
        std::vector<std::string> names;
        for (const auto& c : help.data["commands"]) {
            names.push_back(c["name"]);
        }
        for (const char* want : {"status", "reload", "metrics", "help", "echo", "shards"}) {
            CHECK(std::find(names.begin(), names.end(), want) != names.end());
        }

        auto shards = call(d.socket, "shards");
        REQUIRE(shards.ok);
        REQUIRE(shards.data["shards"].size() == 2);
        const auto& s = shards.data["shards"];
        CHECK(s[0]["index"] == s[0]["worker"]);
        CHECK(s[0]["tid"] != s[1]["tid"]);
        for (const auto& e : s) {
            CHECK(e["tid"] != shards.data["home_tid"]);
        }

        auto unknown = call(d.socket, "agents");
        CHECK(unknown.failure.code == ErrorCode::UnknownCommand);
        auto reload = call(d.socket, "reload");
        CHECK(reload.data["result"] == "applied");
        CHECK(call(d.socket, "status").data["reloads"] == 1);

        auto metrics = call(d.socket, "metrics");
        REQUIRE(metrics.ok);
        const std::string text = metrics.data["text"];
        CHECK(text.find("sallyport_sessions_total{service=\"sftp\"} 3\n") != std::string::npos);
        CHECK(text.find("sallyport_workers 2\n") != std::string::npos);
        CHECK(text.find("sallyport_test_control_value 7\n") != std::string::npos);
        CHECK(text.find("sallyport_session_setup_seconds_count{service=\"sftp\"} 2\n") !=
              std::string::npos);

        CHECK(d.proc.stop() == 0);
        CHECK_FALSE(std::filesystem::exists(d.socket));
    }

    TEST_CASE("status socket: a live path is refused, a stale one replaced, removed on exit") {
        TempDir dir;
        const std::string path = dir.path() + "/admin.sock";
        auto first = start(dir, path);
        auto second = run({SP_ADMIN_TESTD, "--socket", path}, 10s);
        CHECK(second.status == 1);
        CHECK_MESSAGE(
            second.output.find("in use by a running daemon (pid " +
                               std::to_string(first.proc.pid()) + ")") != std::string::npos,
            second.output);
        CHECK(second.output.find("bind-failed") != std::string::npos);
        CHECK(call(path, "status").data["pid"] == first.proc.pid());

        // A daemon killed outright leaves its socket behind; the next one
        // replaces it.
        first.proc.signal(SIGKILL);
        (void)first.proc.wait(5s);
        REQUIRE(std::filesystem::exists(path));
        auto third = start(dir, path, {}, "third.log");
        CHECK(call(path, "status").data["pid"] == third.proc.pid());
        CHECK(third.proc.stop() == 0);
        CHECK_FALSE(std::filesystem::exists(path));

        // Anything that is not a socket is left alone.
        dir.write("admin.sock", "precious");
        auto fourth = run({SP_ADMIN_TESTD, "--socket", path}, 10s);
        CHECK(fourth.status == 1);
        CHECK(fourth.output.find("not a socket") != std::string::npos);
        CHECK(read_file(path) == "precious");
    }

    TEST_CASE("status socket: 10 MB of garbage and a request that never ends are dropped") {
        TempDir dir;
        auto d = start(dir, dir.path() + "/admin.sock", {"--request-timeout-ms", "1000"});

        auto garbage = connect_unix(d.socket);
        REQUIRE(garbage);
        set_timeouts(garbage.get(), 10s);
        std::atomic<size_t> garbage_sent{0};
        std::thread flood([&] {
            std::string chunk(65536, '\x7f');
            for (size_t sent = 0; sent < (10U << 20);) {
                const ssize_t n = ::send(garbage.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
                if (n <= 0) {
                    break;  // the daemon closed it: EPIPE or ECONNRESET
                }
                sent += static_cast<size_t>(n);
                garbage_sent = sent;
            }
        });

        auto slow = connect_unix(d.socket);
        REQUIRE(slow);
        const std::string partial = "{\"v\":1,\"cmd\":";
        REQUIRE(send_all(slow.get(), partial.data(), partial.size()));

        // Meanwhile others are served.
        for (int i = 0; i < 5; ++i) {
            CHECK(call(d.socket, "status").ok);
        }
        flood.join();
        CHECK(garbage_sent.load() < (10U << 20));
        bool eof = false;
        const std::string g = read_until_eof(garbage.get(), 5s, eof);
        CHECK(eof);
        CHECK(first_answer(g).failure.code == ErrorCode::TooLarge);

        const std::string s = read_until_eof(slow.get(), 5s, eof);
        CHECK(eof);
        CHECK(first_answer(s).failure.code == ErrorCode::Timeout);

        CHECK(d.proc.running());
        CHECK(call(d.socket, "status").ok);
        CHECK(d.proc.stop() == 0);
    }

    TEST_CASE("status socket: past the client cap a client is told busy; room frees up") {
        TempDir dir;
        auto d = start(dir, dir.path() + "/admin.sock",
                       {"--max-clients", "3", "--request-timeout-ms", "8000"});
        std::vector<UniqueFd> idle;
        for (int i = 0; i < 3; ++i) {
            idle.push_back(connect_unix(d.socket));
            REQUIRE(idle.back());
        }
        // The daemon accepts them on its next loop turn; a 4th one is refused
        // once all three are in.
        bool refused = false;
        for (int i = 0; i < 50 && !refused; ++i) {
            auto extra = connect_unix(d.socket);
            REQUIRE(extra);
            bool eof = false;
            const std::string got = read_until_eof(extra.get(), 2s, eof);
            if (!got.empty()) {
                CHECK(first_answer(got).failure.code == ErrorCode::Busy);
                CHECK(eof);
                refused = true;
            }
        }
        CHECK(refused);
        auto busy = admin::call(d.socket, req("status"), 5s);
        REQUIRE(busy);
        CHECK(busy->failure.code == ErrorCode::Busy);
        CHECK(ctl({"-s", d.socket, "status"}).status == 1);

        idle.pop_back();
        bool served = false;
        for (int i = 0; i < 50 && !served; ++i) {
            auto r = admin::call(d.socket, req("status"), 5s);
            served = r && r->ok;
            if (!served) {
                std::this_thread::sleep_for(20ms);
            }
        }
        CHECK(served);
        CHECK(d.proc.stop() == 0);
    }

    TEST_CASE("status socket: a slow reader of a big answer is dropped, others go on") {
        TempDir dir;
        auto d = start(dir, dir.path() + "/admin.sock", {"--write-timeout-ms", "1000"});
        auto slow = connect_unix(d.socket);
        REQUIRE(slow);
        const std::string line = admin::encode_request(req("big", Json{{"bytes", 4U << 20}}));
        REQUIRE(send_all(slow.get(), line.data(), line.size()));
        for (int i = 0; i < 5; ++i) {
            CHECK(call(d.socket, "status").ok);
        }
        std::this_thread::sleep_for(1500ms);  // past the write timeout
        bool eof = false;
        const std::string got = read_until_eof(slow.get(), 5s, eof);
        CHECK(eof);
        CHECK(got.size() < (4U << 20));
        CHECK(call(d.socket, "status").ok);

        // A reader that keeps up gets the whole answer.
        auto big = admin::call(d.socket, req("big", Json{{"bytes", 4U << 20}}), 20s);
        REQUIRE(big);
        CHECK(big->data["blob"].get_ref<const std::string&>().size() == (4U << 20));
        CHECK(d.proc.stop() == 0);
    }

    TEST_CASE("status socket: a command that never answers is timed out, the client kept") {
        TempDir dir;
        auto d = start(dir, dir.path() + "/admin.sock", {"--answer-timeout-ms", "300"});
        auto c = connect_unix(d.socket);
        REQUIRE(c);
        const std::string two =
            admin::encode_request(req("hang")) + admin::encode_request(req("echo"));
        REQUIRE(send_all(c.get(), two.data(), two.size()));
        bool eof = false;
        std::string got;
        for (int i = 0; i < 50 && std::count(got.begin(), got.end(), '\n') < 2; ++i) {
            got += read_until_eof(c.get(), 200ms, eof);
        }
        REQUIRE(std::count(got.begin(), got.end(), '\n') == 2);
        CHECK(first_answer(got).failure.code == ErrorCode::Timeout);
        auto second = admin::decode_response(got.substr(got.find('\n') + 1));
        REQUIRE(second);
        CHECK(second->ok);
        CHECK(d.proc.stop() == 0);
    }

    TEST_CASE("sallyportctl: --json documents, columns with units, exit codes") {
        TempDir dir;
        const std::string path = dir.path() + "/admin.sock";
        auto d = start(dir, path);

        auto js = ctl({"-s", path, "--json", "status"});
        REQUIRE(js.status == 0);
        const Json doc = Json::parse(js.output);
        CHECK(doc["program"] == "sallyport-admin-testd");
        CHECK(doc["pid"] == d.proc.pid());

        auto table = ctl({"sessions", "--socket", path, "--service", "sftp"});
        REQUIRE(table.status == 0);
        CHECK(table.output ==
              "ID                CLIENT               SERVICE  AGENT    AGE        UP      DOWN\n"
              "5f0c9a2e7b1d4c38  203.0.113.9:5123     sftp     mft-1  3m12s  1.50 MiB   340 KiB\n"
              "5f0c9a2e7b1d4c39  [2001:db8::7]:40000  https    mft-2  2h05m      12 B  5.00 GiB\n");
        auto js_sessions = ctl({"--json", "-s", path, "sessions"});
        REQUIRE(js_sessions.status == 0);
        CHECK(Json::parse(js_sessions.output)["sessions"][1]["down_bytes"] == 5368709120ULL);

        auto status = ctl({"-s", path, "status"});
        REQUIRE(status.status == 0);
        CHECK(status.output.find("program:    sallyport-admin-testd\n") != std::string::npos);
        CHECK(status.output.find("workers:    2\n") != std::string::npos);

        auto metrics = ctl({"-s", path, "metrics"});
        REQUIRE(metrics.status == 0);
        CHECK(metrics.output.find("# TYPE sallyport_build_info gauge\n") != std::string::npos);

        auto reload = ctl({"-s", path, "reload"});
        CHECK(reload.status == 0);
        CHECK(reload.output == "result: applied\n");

        auto unknown = ctl({"-s", path, "agents"});
        CHECK(unknown.status == 2);
        CHECK(unknown.output.find("no command \"agents\"") != std::string::npos);
        CHECK(ctl({"-s", path, "bogus"}).status == 2);
        CHECK(ctl({"-s", path, "sessions", "--client", "300.1.1.1"}).status == 2);

        auto missing = ctl({"-s", dir.path() + "/nope.sock", "status"});
        CHECK(missing.status == 1);
        CHECK(missing.output.find("no such socket") != std::string::npos);

        CHECK(d.proc.stop() == 0);
        auto gone = ctl({"-s", path, "status"});
        CHECK(gone.status == 1);

        // A reload the daemon refuses names the file position and exits 2.
        auto failing = start(dir, path, {"--reload-fails"}, "failing.log");
        auto refused = ctl({"-s", path, "reload"});
        CHECK(refused.status == 2);
        CHECK(refused.output.find("/etc/x.toml:3:11: relay.threads: must be at most 1024") !=
              std::string::npos);
        CHECK(failing.proc.stop() == 0);
    }

    TEST_CASE("metrics endpoint: GET /metrics only, promtool-clean") {
        TempDir dir;
        const uint16_t port = free_port();
        auto d = start(dir, dir.path() + "/admin.sock",
                       {"--metrics", "127.0.0.1:" + std::to_string(port)});
        std::string ok;
        for (int i = 0; i < 50 && ok.empty(); ++i) {
            ok = http(port, "GET /metrics HTTP/1.0\r\n\r\n");
        }
        const bool status_ok = ok.starts_with("HTTP/1.0 200") || ok.starts_with("HTTP/1.1 200");
        REQUIRE_MESSAGE(status_ok, ok.substr(0, 200));
        CHECK(ok.find("text/plain; version=0.0.4; charset=utf-8") != std::string::npos);
        const std::string body = ok.substr(ok.find("\r\n\r\n") + 4);
        CHECK(body.find("sallyport_build_info{program=\"sallyport-admin-testd\",version=\"") !=
              std::string::npos);
        CHECK(body.find("sallyport_sessions_total{service=\"sftp\"} 3\n") != std::string::npos);
        // The same text as over the socket, but for the gauges that move.
        CHECK(call(d.socket, "metrics").data["text"] == body);

        const std::string nf = http(port, "GET /other HTTP/1.0\r\n\r\n");
        CHECK(nf.find(" 404 ") != std::string::npos);
        const std::string na = http(port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
        CHECK(na.find(" 405 ") != std::string::npos);
        CHECK(na.find("Allow: GET") != std::string::npos);
        const std::string head = http(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
        CHECK(head.find(" 405 ") != std::string::npos);

        if (::access("/usr/bin/promtool", X_OK) == 0) {
            const std::string file = dir.write("metrics.txt", body);
            auto lint = run({"/bin/sh", "-c", "promtool check metrics < " + file}, 30s);
            CHECK_MESSAGE(lint.status == 0, lint.output);
        } else {
            MESSAGE("promtool not installed (apt-get install prometheus): lint skipped");
        }
        CHECK(d.proc.stop() == 0);
        CHECK(connect_to("127.0.0.1", port, 500ms).valid() == false);
    }
}
