// SPDX-License-Identifier: Apache-2.0
// PROXY protocol v1 and v2 from the agent, read by real consumers from
// Debian: nginx (`listen ... proxy_protocol`, $proxy_protocol_addr) and
// haproxy (`bind ... accept-proxy`, %[src]). Clients come from 127.0.0.7 and
// ::1 while the agent dials the backend from 127.0.0.1, so only a header
// that was read can put the client's address in the answer. A consumer whose
// binary is missing is skipped; with neither installed the test exits 77.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "fixture.hpp"

using namespace sp::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kNginx = "/usr/sbin/nginx";
constexpr const char* kHaproxy = "/usr/sbin/haproxy";

bool have(const char* bin) {
    return ::access(bin, X_OK) == 0;
}

struct Case {
    const char* version;  // "v1" | "v2"
    const char* host;     // relay listener and client family
    const char* source;   // the client's address
};
constexpr Case kCases[] = {
    {"v1", "127.0.0.1", "127.0.0.7"},
    {"v2", "127.0.0.1", "127.0.0.7"},
    {"v1", "::1", "::1"},
    {"v2", "::1", "::1"},
};

std::string bracketed(const char* host, uint16_t port) {
    return std::string(host).find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                                            : fmt::format("{}:{}", host, port);
}

// One relay and one agent with a service per case, all to `backend`.
struct Relayed {
    Deployment d;
    std::vector<uint16_t> ports;

    explicit Relayed(uint16_t backend) {
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        std::string services;
        for (const auto& c : kCases) {
            const uint16_t p = free_port(c.host);
            ports.push_back(p);
            services +=
                Deployment::service(fmt::format("{}-{}", c.version, ports.size()),
                                    bracketed(c.host, p), fmt::format("127.0.0.1:{}", backend),
                                    fmt::format("proxy_protocol = \"{}\"\n", c.version));
        }
        d.start_agent(services);
        REQUIRE(d.relay.wait_for_output("listener-open", 10s, std::size(kCases)));
    }
};

// An HTTP/1.0 GET from `source`; returns the whole answer and the client port.
std::string get(const char* host, uint16_t port, const char* source, uint16_t& client_port) {
    auto fd = connect_to(host, port, 2s, source);
    if (!fd) {
        return "<connect failed>";
    }
    set_timeouts(fd.get(), 5s);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    client_port = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                                : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    const std::string req = "GET / HTTP/1.0\r\nHost: sallyport.test\r\n\r\n";
    if (!send_all(fd.get(), req.data(), req.size())) {
        return "<send failed>";
    }
    return recv_all(fd.get());
}

// A consumer started by PID, its output in the temp dir, stopped by PID.
Process start_consumer(const std::vector<std::string>& argv, const std::string& log,
                       uint16_t port) {
    auto p = Process::start(argv, log);
    auto probe = connect_retry("127.0.0.1", port, 10s);
    REQUIRE_MESSAGE(probe, read_file(log));
    return p;
}

void check_cases(Relayed& r, const std::string& expect_fmt) {
    for (size_t i = 0; i < std::size(kCases); ++i) {
        const auto& c = kCases[i];
        CAPTURE(c.version);
        CAPTURE(c.host);
        uint16_t cport = 0;
        const auto answer = get(c.host, r.ports[i], c.source, cport);
        CAPTURE(answer);
        CHECK(answer.find(" 200 ") != std::string::npos);
        CHECK(answer.find(fmt::format(fmt::runtime(expect_fmt), c.source, cport)) !=
              std::string::npos);
    }
}

// What one backend connection received until EOF (bounded by 5 s).
std::string capture_one(int listener) {
    pollfd p{listener, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) {
        return "<no connection>";
    }
    sp::UniqueFd c(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) {
        return "<accept failed>";
    }
    set_timeouts(c.get(), 5s);
    return recv_all(c.get(), 4096);
}

std::string be16(uint16_t v) {
    return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

}  // namespace

TEST_SUITE("integration.proxy_protocol") {
    TEST_CASE("proxy: consumers are installed") {
        if (!have(kNginx) && !have(kHaproxy)) {
            MESSAGE("neither nginx nor haproxy is installed: skipping");
            std::_Exit(77);  // meson: skipped
        }
    }

    TEST_CASE("proxy: nginx shows the client's address from v1 and v2, IPv4 and IPv6" *
              doctest::skip(!have(kNginx))) {
        TempDir dir;
        const uint16_t port = free_port();
        const std::string conf = dir.write("nginx.conf", fmt::format(R"(
worker_processes 1;
pid {0}/nginx.pid;
error_log {0}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format pp '$proxy_protocol_addr $proxy_protocol_port $realip_remote_addr';
    access_log {0}/access.log pp;
    client_body_temp_path {0}/body;
    proxy_temp_path {0}/proxy;
    fastcgi_temp_path {0}/fastcgi;
    uwsgi_temp_path {0}/uwsgi;
    scgi_temp_path {0}/scgi;
    server {{
        listen 127.0.0.1:{1} proxy_protocol;
        # As in sallyport(7): the agent's address is trusted to tell the client's.
        set_real_ip_from 127.0.0.1;
        real_ip_header proxy_protocol;
        location / {{
            return 200 "pp=$proxy_protocol_addr port=$proxy_protocol_port remote=$remote_addr agent=$realip_remote_addr\n";
        }}
    }}
}}
)",
                                                                     dir.path(), port));
        Relayed r(port);
        auto nginx = start_consumer({kNginx, "-e", dir.path() + "/error.log", "-p", dir.path(),
                                     "-c", conf, "-g", "daemon off;"},
                                    dir.path() + "/nginx.out", port);
        // agent= is the connection's own source: the client's address comes
        // only from the header, and realip makes it nginx's $remote_addr.
        check_cases(r, "pp={0} port={1} remote={0} agent=127.0.0.1\n");
        const auto access = read_file(dir.path() + "/access.log");
        CHECK(access.find("127.0.0.7 ") != std::string::npos);
        CHECK(access.find("::1 ") != std::string::npos);
        CHECK(nginx.stop() == 0);
    }

    TEST_CASE("proxy: haproxy accept-proxy sees the client's address from v1 and v2" *
              doctest::skip(!have(kHaproxy))) {
        TempDir dir;
        const uint16_t port = free_port();
        const std::string conf = dir.write("haproxy.cfg", fmt::format(R"(
global
    pidfile {0}/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{1} accept-proxy
    http-request return status 200 content-type text/plain lf-string "src=%[src] port=%[src_port]\n"
)",
                                                                      dir.path(), port));
        Relayed r(port);
        auto haproxy =
            start_consumer({kHaproxy, "-db", "-f", conf}, dir.path() + "/haproxy.out", port);
        check_cases(r, "src={} port={}\n");
        // haproxy exits 0 on SIGTERM in the foreground, or 143 on some builds.
        const auto status = haproxy.stop();
        CHECK(status.has_value());
    }

    TEST_CASE("proxy: the backend gets the exact header, then the client's first byte") {
        const uint16_t port = free_port();
        sp::UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(listener.get(), 16) == 0);
        Relayed r(port);
        const std::string sig("\r\n\r\n\0\r\nQUIT\n", 12);
        const std::string lo4("\x7f\0\0\x01", 4);
        const std::string src4("\x7f\0\0\x07", 4);
        const std::string lo6 = std::string(15, '\0') + "\x01";
        for (size_t i = 0; i < std::size(kCases); ++i) {
            const auto& c = kCases[i];
            CAPTURE(c.version);
            CAPTURE(c.host);
            std::string got;
            std::thread backend([&] { got = capture_one(listener.get()); });
            auto fd = connect_to(c.host, r.ports[i], 2s, c.source);
            REQUIRE(fd);
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
            const uint16_t cport =
                ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                              : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
            REQUIRE(send_all(fd.get(), "hello", 5));
            ::shutdown(fd.get(), SHUT_WR);
            backend.join();
            const bool v6 = std::string(c.host) == "::1";
            std::string want;
            if (std::string(c.version) == "v1") {
                want =
                    v6 ? fmt::format("PROXY TCP6 ::1 ::1 {} {}\r\n", cport, r.ports[i])
                       : fmt::format("PROXY TCP4 127.0.0.7 127.0.0.1 {} {}\r\n", cport, r.ports[i]);
            } else {
                want = sig + "\x21" +
                       (v6 ? std::string("\x21\0\x24", 3) + lo6 + lo6
                           : std::string("\x11\0\x0c", 3) + src4 + lo4) +
                       be16(cport) + be16(r.ports[i]);
            }
            CHECK(got == want + "hello");
        }
    }
}
