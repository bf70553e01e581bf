// SPDX-License-Identifier: Apache-2.0
// The status socket served in-process on a Poller, with real unix-socket
// clients on the same thread: every exchange pumps the loop a bounded number
// of turns. Deadlines (request, answer, write timeouts) are exercised by
// tests/integration/admin_socket_test.cpp against a real daemon shell.
#include "daemon/admin_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "daemon/commands.hpp"

using namespace sp;
using namespace sp::daemon;
using admin::ErrorCode;
using admin::Json;
using namespace std::chrono_literals;

namespace {

struct Dir {
    Dir() {
        char tmpl[] = "/tmp/sp-admin-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~Dir() { std::filesystem::remove_all(path); }
    std::string path;
};

UniqueFd connect_to(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.data(), path.size());
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
        return UniqueFd();
    }
    return fd;
}

void send_text(int fd, const std::string& s) {
    REQUIRE(::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()));
}

/// What a client received: complete lines, and whether the server closed.
struct Received {
    std::vector<std::string> lines;
    bool eof = false;
};

/// Pumps `poller` until `fd` received `want` lines (or EOF), at most 500 turns.
Received pump_until(Poller& poller, int fd, size_t want, std::string& buf) {
    Received r;
    for (int turn = 0; turn < 500; ++turn) {
        (void)poller.run_once(5ms);
        char chunk[65536];
        for (;;) {
            const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
            if (n > 0) {
                buf.append(chunk, static_cast<size_t>(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                r.eof = true;
            }
            break;
        }
        for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
            r.lines.push_back(buf.substr(0, nl + 1));
            buf.erase(0, nl + 1);
        }
        if (r.lines.size() >= want || r.eof) {
            break;
        }
    }
    return r;
}

admin::Response decode(const std::string& line) {
    auto r = admin::decode_response(line);
    REQUIRE(r);
    return *r;
}

struct Fixture {
    Fixture() {
        auto p = Poller::create();
        REQUIRE(p);
        poller.emplace(std::move(*p));
        commands.register_command(
            "echo", [](const admin::Args& a) -> admin::Outcome<Json> { return a.json(); });
        commands.register_async(
            "later", [this](const admin::Args&, Reply r) { held.push_back(std::move(r)); });
        commands.register_command("big", [](const admin::Args&) -> admin::Outcome<Json> {
            return Json{{"blob", std::string(4096, 'x')}};
        });
    }
    std::unique_ptr<AdminSocket> open(AdminLimits limits = {}) {
        auto s = AdminSocket::open(*poller, commands, path, limits);
        REQUIRE_MESSAGE(s, (s ? "" : s.error().describe()));
        return std::move(*s);
    }
    Dir dir;
    std::string path = dir.path + "/admin.sock";
    std::optional<Poller> poller;
    CommandRegistry commands;
    std::vector<Reply> held;
};

}  // namespace

TEST_SUITE("daemon.admin_socket") {
    TEST_CASE("admin socket: answers pipelined requests in order and keeps the connection") {
        Fixture f;
        auto s = f.open();
        auto c = connect_to(f.path);
        REQUIRE(c);
        send_text(c.get(),
                  "{\"v\":1,\"cmd\":\"echo\",\"args\":{\"n\":1}}\n{\"v\":1,\"cmd\":\"echo\","
                  "\"args\":{\"n\":2}}\n");
        std::string buf;
        auto got = pump_until(*f.poller, c.get(), 2, buf);
        REQUIRE(got.lines.size() == 2);
        CHECK(decode(got.lines[0]).data == Json{{"n", 1}});
        CHECK(decode(got.lines[1]).data == Json{{"n", 2}});
        CHECK_FALSE(got.eof);
        send_text(c.get(), "{\"v\":1,\"cmd\":\"nope\"}\n");
        got = pump_until(*f.poller, c.get(), 1, buf);
        REQUIRE(got.lines.size() == 1);
        CHECK(decode(got.lines[0]).failure.code == ErrorCode::UnknownCommand);
        CHECK(s->clients() == 1);
    }

    TEST_CASE("admin socket: a client that shuts down after its request is answered, then closed") {
        Fixture f;
        auto s = f.open();
        auto c = connect_to(f.path);
        REQUIRE(c);
        send_text(c.get(), "{\"v\":1,\"cmd\":\"echo\"}");  // no newline
        REQUIRE(::shutdown(c.get(), SHUT_WR) == 0);
        std::string buf;
        auto got = pump_until(*f.poller, c.get(), 2, buf);
        REQUIRE(got.lines.size() == 1);
        CHECK(decode(got.lines[0]).ok);
        CHECK(got.eof);
    }

    TEST_CASE("admin socket: garbage and oversized requests are answered, then dropped") {
        Fixture f;
        AdminLimits limits;
        limits.max_request = 256;
        auto s = f.open(limits);
        auto bad = connect_to(f.path);
        auto big = connect_to(f.path);
        auto good = connect_to(f.path);
        send_text(bad.get(), "GET / HTTP/1.0\r\n\r\n");
        send_text(big.get(), std::string(1000, '{'));
        std::string b1;
        std::string b2;
        std::string b3;
        auto r1 = pump_until(*f.poller, bad.get(), 2, b1);
        REQUIRE(r1.lines.size() == 1);
        CHECK(decode(r1.lines[0]).failure.code == ErrorCode::BadRequest);
        CHECK(r1.eof);
        auto r2 = pump_until(*f.poller, big.get(), 2, b2);
        REQUIRE(r2.lines.size() == 1);
        CHECK(decode(r2.lines[0]).failure.code == ErrorCode::TooLarge);
        CHECK(r2.eof);
        send_text(good.get(), "{\"v\":1,\"cmd\":\"echo\"}\n");
        auto r3 = pump_until(*f.poller, good.get(), 1, b3);
        REQUIRE(r3.lines.size() == 1);
        CHECK(decode(r3.lines[0]).ok);
        CHECK(s->clients() == 1);
    }

    TEST_CASE(
        "admin socket: an answer given later reaches its client; one for a client gone is "
        "dropped") {
        Fixture f;
        auto s = f.open();
        auto a = connect_to(f.path);
        auto b = connect_to(f.path);
        send_text(a.get(), "{\"v\":1,\"cmd\":\"later\"}\n");
        send_text(b.get(), "{\"v\":1,\"cmd\":\"later\"}\n");
        std::string ba;
        std::string bb;
        for (int i = 0; i < 100 && f.held.size() < 2; ++i) {
            (void)f.poller->run_once(5ms);
        }
        REQUIRE(f.held.size() == 2);
        b.reset();  // b leaves before its answer
        for (int i = 0; i < 20; ++i) {
            (void)f.poller->run_once(1ms);
        }
        f.held[1].ok(Json{{"for", "b"}});
        f.held[0].ok(Json{{"for", "a"}});
        auto got = pump_until(*f.poller, a.get(), 1, ba);
        REQUIRE(got.lines.size() == 1);
        CHECK(decode(got.lines[0]).data == Json{{"for", "a"}});
        CHECK(s->clients() == 1);
    }

    TEST_CASE("admin socket: a reply completed after the socket closed is harmless") {
        Fixture f;
        auto s = f.open();
        auto a = connect_to(f.path);
        send_text(a.get(), "{\"v\":1,\"cmd\":\"later\"}\n");
        for (int i = 0; i < 100 && f.held.empty(); ++i) {
            (void)f.poller->run_once(5ms);
        }
        REQUIRE(f.held.size() == 1);
        s.reset();
        f.held[0].ok(Json::object());
        CHECK(f.held[0].answered());
    }

    TEST_CASE("admin socket: past max_clients a client is told busy and closed") {
        Fixture f;
        AdminLimits limits;
        limits.max_clients = 2;
        auto s = f.open(limits);
        auto c1 = connect_to(f.path);
        auto c2 = connect_to(f.path);
        for (int i = 0; i < 20; ++i) {
            (void)f.poller->run_once(1ms);
        }
        REQUIRE(s->clients() == 2);
        auto c3 = connect_to(f.path);
        std::string buf;
        auto got = pump_until(*f.poller, c3.get(), 2, buf);
        REQUIRE(got.lines.size() == 1);
        CHECK(decode(got.lines[0]).failure.code == ErrorCode::Busy);
        CHECK(got.eof);
        c1.reset();
        std::string b2;
        send_text(c2.get(), "{\"v\":1,\"cmd\":\"echo\"}\n");
        CHECK(pump_until(*f.poller, c2.get(), 1, b2).lines.size() == 1);
        auto c4 = connect_to(f.path);
        std::string b4;
        send_text(c4.get(), "{\"v\":1,\"cmd\":\"echo\"}\n");
        auto r4 = pump_until(*f.poller, c4.get(), 1, b4);
        REQUIRE(r4.lines.size() == 1);
        CHECK(decode(r4.lines[0]).ok);
    }

    TEST_CASE("admin socket: an answer larger than the bound becomes answer-too-large") {
        Fixture f;
        AdminLimits limits;
        limits.max_answer = 1024;
        auto s = f.open(limits);
        auto c = connect_to(f.path);
        send_text(c.get(), "{\"v\":1,\"cmd\":\"big\"}\n");
        std::string buf;
        auto got = pump_until(*f.poller, c.get(), 1, buf);
        REQUIRE(got.lines.size() == 1);
        CHECK(decode(got.lines[0]).failure.code == ErrorCode::AnswerTooLarge);
    }

    TEST_CASE("admin socket: mode 0660, group, a live path refused, a stale one replaced") {
        Fixture f;
        {
            auto s = f.open();
            struct stat st {};
            REQUIRE(::stat(f.path.c_str(), &st) == 0);
            CHECK(S_ISSOCK(st.st_mode));
            CHECK((st.st_mode & 07777) == 0660);
            CHECK(st.st_gid == ::getegid());
            auto second = AdminSocket::open(*f.poller, f.commands, f.path);
            REQUIRE_FALSE(second);
            CHECK(second.error().describe().find("in use by a running daemon (pid " +
                                                 std::to_string(::getpid()) + ")") !=
                  std::string::npos);
        }
        // Removed with the socket.
        CHECK_FALSE(std::filesystem::exists(f.path));

        // A stale socket file: bound, never listened on, left behind.
        {
            UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
            sockaddr_un sa{};
            sa.sun_family = AF_UNIX;
            std::memcpy(sa.sun_path, f.path.data(), f.path.size());
            REQUIRE(::bind(stale.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0);
        }
        REQUIRE(std::filesystem::exists(f.path));
        {
            auto s = f.open();
            auto c = connect_to(f.path);
            REQUIRE(c);
        }

        // Anything else is left alone.
        { std::ofstream(f.path) << "not a socket"; }
        auto refused = AdminSocket::open(*f.poller, f.commands, f.path);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().describe().find("not a socket") != std::string::npos);
        CHECK(std::filesystem::is_regular_file(f.path));

        auto too_long = AdminSocket::open(*f.poller, f.commands, "/" + std::string(200, 'x'));
        CHECK_FALSE(too_long);
    }
}
