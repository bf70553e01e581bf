// SPDX-License-Identifier: Apache-2.0
// The forward proxy's agent half with the real agent: socks5_listen and
// http_proxy_listen against real clients (raw sockets and curl). Refusals
// that need no relay (caller not allowed, malformed request, no relay up, a
// users file open to others), then the whole path through a scripted relay
// in this process that speaks the real protocol: OUTBOUND_REQUEST in,
// OUTBOUND_RESULT out, a data channel with the token, the binding header,
// and its own splice to the partner.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "config/keys.hpp"
#include "control/frame.hpp"
#include "control/peer.hpp"
#include "control/tls.hpp"
#include "fixture.hpp"

using namespace sp::test;
using namespace std::chrono_literals;
namespace control = sp::control;

namespace {

using Bytes = std::vector<uint8_t>;

// A port outside the kernel's ephemeral range (32768-60999), so that no
// outgoing connection of this machine can hold it by chance; the first of a
// bounded scan that binds on `host`.
uint16_t pick_port(const char* host = "127.0.0.1") {
    static std::atomic<unsigned> next{20000U + (static_cast<unsigned>(::getpid()) * 7U) % 10000U};
    for (int i = 0; i < 500; ++i) {
        const auto p = static_cast<uint16_t>(20000U + (next++ % 12000U));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(p);
        ::inet_pton(AF_INET, host, &a.sin_addr);
        sp::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
            return p;
        }
    }
    FAIL("no free port in 20000-31999");
    return 0;
}

// The scripted relay's answer to an OUTBOUND_REQUEST; nullopt: never answer.
using Decide =
    std::function<std::optional<control::OutboundResult>(const control::OutboundRequest&)>;

// Copies both ways between two sockets until both directions ended.
void splice_pair(sp::UniqueFd a, sp::UniqueFd b, const std::atomic<bool>& stop) {
    std::array<bool, 2> open{true, true};  // a->b, b->a
    std::vector<char> buf(65536);
    while (!stop && (open[0] || open[1])) {
        std::array<pollfd, 2> p{pollfd{a.get(), static_cast<short>(open[0] ? POLLIN : 0), 0},
                                pollfd{b.get(), static_cast<short>(open[1] ? POLLIN : 0), 0}};
        if (::poll(p.data(), 2, 100) <= 0) {
            continue;
        }
        for (int i = 0; i < 2; ++i) {
            if (!open[i] || p[i].revents == 0) {
                continue;
            }
            const int from = i == 0 ? a.get() : b.get();
            const int to = i == 0 ? b.get() : a.get();
            const ssize_t n = ::recv(from, buf.data(), buf.size(), MSG_DONTWAIT);
            if (n > 0) {
                if (!send_all(to, buf.data(), static_cast<size_t>(n))) {
                    return;
                }
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                open[i] = false;
                ::shutdown(to, SHUT_WR);
            }
        }
    }
}

// A relay reduced to the outbound path: PSK TLS control channel with real
// frames, OUTBOUND_RESULT as `decide` says, and for an accepted request a
// data channel that must present its token, gets a binding header with
// service "" and is spliced to the destination (an IP literal).
class OutboundRelay final {
public:
    OutboundRelay(const std::string& key_file, Decide decide) : decide_(std::move(decide)) {
        auto keys = sp::config::load_keys(key_file, true);
        REQUIRE(keys);
        key_ = keys->front();
        auto ctx = control::TlsContext::psk_server(
            [this](std::string_view id) -> std::optional<std::vector<uint8_t>> {
                if (id == key_.id) {
                    return key_.secret;
                }
                return std::nullopt;
            });
        REQUIRE(ctx);
        ctx_.emplace(std::move(*ctx));
        port_ = pick_port();
        listener_ = sp::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port_);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(listener_.get(), 128) == 0);
        thread_ = std::thread([this] { run(); });
    }
    ~OutboundRelay() {
        stop_ = true;
        thread_.join();
        for (auto& t : splices_) {
            t.join();
        }
    }
    OutboundRelay(const OutboundRelay&) = delete;
    OutboundRelay& operator=(const OutboundRelay&) = delete;

    [[nodiscard]] uint16_t port() const { return port_; }
    [[nodiscard]] int requests() const { return requests_.load(); }
    [[nodiscard]] int channels() const { return channels_.load(); }
    /// Closes the control channel (from the relay's thread, at its next turn).
    void drop_control() { drop_ = true; }

private:
    void run() {
        while (!stop_) {
            std::vector<pollfd> fds{{listener_.get(), POLLIN, 0}};
            if (peer_) {
                fds.push_back({peer_->fd(),
                               static_cast<short>(POLLIN | (peer_->poll_events() & POLLOUT)), 0});
            }
            ::poll(fds.data(), fds.size(), 20);
            if (drop_.exchange(false)) {
                peer_.reset();
                continue;
            }
            if ((fds[0].revents & POLLIN) != 0) {
                accept_one();
            }
            if (peer_ && fds.size() > 1 && fds[1].revents != 0) {
                (void)peer_->flush();
                std::vector<control::OutboundRequest> asked;
                const auto r = peer_->read_frames([&](control::Message&& m) {
                    if (std::holds_alternative<control::Hello>(m)) {
                        (void)peer_->send(control::HelloAck{1, "scripted", 600000, 1});
                    } else if (auto* o = std::get_if<control::OutboundRequest>(&m)) {
                        asked.push_back(*o);
                    }
                    return true;
                });
                for (const auto& o : asked) {
                    ++requests_;
                    auto res = decide_(o);
                    if (!res) {
                        continue;
                    }
                    res->request_id = o.request_id;
                    if (res->status == control::OutboundStatus::Ok) {
                        res->token = control::Token{};
                        const uint32_t n = next_token_++;
                        std::memcpy(res->token.data(), &n, sizeof n);
                        std::lock_guard lock(mu_);
                        targets_[res->token] = o;
                    }
                    (void)peer_->send(*res);
                }
                if (r.status != control::FramedPeer::ReadStatus::Open) {
                    peer_.reset();
                }
            }
        }
    }

    void accept_one() {
        sp::UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) {
            return;
        }
        set_timeouts(c.get(), 2s);
        uint8_t first = 0;
        if (::recv(c.get(), &first, 1, MSG_PEEK) != 1) {
            return;
        }
        if (first == 0x16) {
            auto s = control::TlsStream::create(*ctx_, std::move(c));
            REQUIRE(s);
            for (int i = 0; i < 200; ++i) {
                const auto r = s->handshake();
                if (r.status == control::TlsStatus::Done) {
                    peer_ = std::make_unique<control::FramedPeer>(std::move(*s));
                    return;
                }
                if (r.status == control::TlsStatus::Error) {
                    return;
                }
                pollfd p{s->fd(),
                         static_cast<short>(r.status == control::TlsStatus::WantWrite ? POLLOUT
                                                                                      : POLLIN),
                         0};
                ::poll(&p, 1, 50);
            }
            return;
        }
        const std::string hello = recv_n(c.get(), control::kChannelHelloSize);
        const auto h = control::decode_channel_hello(
            {reinterpret_cast<const uint8_t*>(hello.data()), hello.size()});
        if (h.status != control::DecodeStatus::Ok) {
            return;
        }
        control::OutboundRequest o;
        {
            std::lock_guard lock(mu_);
            const auto it = targets_.find(h.token);
            if (it == targets_.end()) {
                return;  // unknown or used token: close, as the relay does
            }
            o = it->second;
            targets_.erase(it);
        }
        ++channels_;
        sp::UniqueFd out = connect_to(o.host.c_str(), o.port);
        if (!out) {
            return;
        }
        const auto header = control::encode_binding(
            control::Binding{static_cast<uint64_t>(0x5e55000 + channels_.load()), "",
                             fmt::format("{}:{}", o.host, o.port), "127.0.0.9:40000"});
        (void)send_all(c.get(), header->data(), header->size());
        set_timeouts(c.get(), 0ms);
        splices_.emplace_back([a = std::move(c), b = std::move(out), this]() mutable {
            splice_pair(std::move(a), std::move(b), stop_);
        });
    }

    Decide decide_;
    sp::config::Key key_;
    std::optional<control::TlsContext> ctx_;
    sp::UniqueFd listener_;
    uint16_t port_ = 0;
    std::unique_ptr<control::FramedPeer> peer_;
    std::mutex mu_;
    std::map<control::Token, control::OutboundRequest> targets_;
    uint32_t next_token_ = 1;
    std::atomic<bool> stop_{false};
    std::atomic<bool> drop_{false};
    std::atomic<int> requests_{0};
    std::atomic<int> channels_{0};
    std::vector<std::thread> splices_;
    std::thread thread_;
};

struct Proxy {
    uint16_t socks = 0;
    uint16_t http = 0;
};

std::string agent_toml(Deployment& d, uint16_t relay_port, const Proxy& p,
                       const std::string& outbound_extra) {
    return fmt::format(R"([agent]
name = "agent1"
status_socket = "{}/agent1.sock"
pool = 0
threads = 2

[[relay]]
address = "127.0.0.1:{}"
key = "{}"

[outbound]
socks5_listen = "127.0.0.1:{}"
http_proxy_listen = "127.0.0.1:{}"
{}
)",
                       d.dir.path(), relay_port, d.agent_key("agent1"), p.socks, p.http,
                       outbound_extra);
}

Proxy start_agent(Deployment& d, uint16_t relay_port, const std::string& outbound_extra = "") {
    Proxy p{pick_port(), pick_port()};
    const auto cfg = d.dir.write("agent.toml", agent_toml(d, relay_port, p, outbound_extra));
    d.agent = d.start_agent_process(cfg, "agent.log");
    REQUIRE(d.agent.wait_for_output("started", 10s));
    // The listeners are open before "started" is logged; a connect proves it.
    REQUIRE(connect_retry("127.0.0.1", p.socks, 5s));
    return p;
}

Bytes as_bytes(const std::string& s) {
    return {s.begin(), s.end()};
}

Bytes read_n(int fd, size_t n) {
    return as_bytes(recv_n(fd, n));
}

Bytes socks_connect_request(const std::string& host, uint16_t port) {
    // Built byte by byte: gcc 12's -Warray-bounds misreads an insert here.
    Bytes r;
    r.reserve(7 + host.size());
    for (const uint8_t b : {5, 1, 0, 3}) {
        r.push_back(b);
    }
    r.push_back(static_cast<uint8_t>(host.size()));
    for (const char c : host) {
        r.push_back(static_cast<uint8_t>(c));
    }
    r.push_back(static_cast<uint8_t>(port >> 8));
    r.push_back(static_cast<uint8_t>(port & 0xff));
    return r;
}

// A SOCKS5 CONNECT without authentication: the connected socket and the
// reply code (0xff when the exchange broke).
std::pair<sp::UniqueFd, uint8_t> socks_connect(uint16_t proxy, const std::string& host,
                                               uint16_t port) {
    sp::UniqueFd fd = connect_to("127.0.0.1", proxy);
    REQUIRE(fd);
    set_timeouts(fd.get(), 10s);
    const Bytes greet{5, 1, 0};
    REQUIRE(send_all(fd.get(), greet.data(), greet.size()));
    if (read_n(fd.get(), 2) != Bytes{5, 0}) {
        return {std::move(fd), 0xff};
    }
    const auto req = socks_connect_request(host, port);
    REQUIRE(send_all(fd.get(), req.data(), req.size()));
    const Bytes reply = read_n(fd.get(), 10);
    if (reply.size() != 10 || reply[0] != 5) {
        return {std::move(fd), 0xff};
    }
    return {std::move(fd), reply[1]};
}

// An HTTP CONNECT: the socket and the status line.
std::pair<sp::UniqueFd, std::string> http_connect(uint16_t proxy, const std::string& authority,
                                                  const std::string& extra = "") {
    sp::UniqueFd fd = connect_to("127.0.0.1", proxy);
    REQUIRE(fd);
    set_timeouts(fd.get(), 10s);
    const std::string req =
        fmt::format("CONNECT {} HTTP/1.1\r\nHost: {}\r\n{}\r\n", authority, authority, extra);
    REQUIRE(send_all(fd.get(), req.data(), req.size()));
    // Read the head byte by byte up to the blank line (bounded).
    std::string head;
    while (head.size() < 4096 && head.find("\r\n\r\n") == std::string::npos) {
        const std::string b = recv_n(fd.get(), 1);
        if (b.empty()) {
            break;
        }
        head += b;
    }
    return {std::move(fd), head.substr(0, head.find("\r\n"))};
}

std::string sha_of_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    Sha256 h;
    std::vector<char> buf(1 << 20);
    while (f) {
        f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        h.update(buf.data(), static_cast<size_t>(f.gcount()));
    }
    return h.hex();
}

// Sends `size` pattern bytes, half-closes, and returns what the HashReply
// server answered (the hex SHA-256 of what it received).
std::string push_and_hash(int fd, size_t size, std::string& sent_hash) {
    Sha256 h;
    std::vector<char> buf(1 << 16);
    for (size_t off = 0; off < size; off += buf.size()) {
        const size_t n = std::min(buf.size(), size - off);
        fill_pattern(7, off, buf.data(), n);
        h.update(buf.data(), n);
        if (!send_all(fd, buf.data(), n)) {
            return {};
        }
    }
    sent_hash = h.hex();
    ::shutdown(fd, SHUT_WR);
    return recv_all(fd, 128);
}

// A partner's web server (python3 http.server) on `host`, serving a 64 MiB
// file of pattern bytes; stopped by its PID.
struct Partner {
    std::string host;
    uint16_t port = 0;
    std::string want;  // the file's SHA-256
    Process server;

    Partner(Deployment& d, const char* h) : host(h) {
        // posix_spawn takes no PATH: programs by their Debian paths.
        const std::string dir = d.dir.path() + "/www-" + host;
        REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
        {
            std::ofstream f(dir + "/blob", std::ios::binary);
            std::vector<char> buf(1U << 20);
            for (uint64_t off = 0; off < (64U << 20); off += buf.size()) {
                fill_pattern(11, off, buf.data(), buf.size());
                f.write(buf.data(), static_cast<std::streamsize>(buf.size()));
            }
        }
        want = sha_of_file(dir + "/blob");
        port = pick_port(h);
        server = Process::start({"/usr/bin/python3", "-m", "http.server", "--bind", host,
                                 std::to_string(port), "--directory", dir},
                                d.dir.path() + "/http-" + host + ".log");
        REQUIRE(connect_retry(h, port, 10s));
    }
    ~Partner() { (void)server.stop(std::chrono::seconds(5)); }
    Partner(const Partner&) = delete;
    Partner& operator=(const Partner&) = delete;
};

// The partner's file through the agent's SOCKS5 proxy (the name resolved
// on the far side) and through its CONNECT proxy, checked by SHA-256.
void curl_both(Deployment& d, const Proxy& p, const Partner& web) {
    const std::string url = fmt::format("http://{}:{}/blob", web.host, web.port);
    const std::string out1 = d.dir.path() + "/via-socks";
    const auto a = run({"/usr/bin/curl", "-sS", "--max-time", "60", "--socks5-hostname",
                        fmt::format("127.0.0.1:{}", p.socks), "-o", out1, url},
                       std::chrono::seconds(90));
    CHECK(a.status == 0);
    CHECK(sha_of_file(out1) == web.want);
    const std::string out2 = d.dir.path() + "/via-connect";
    const auto b = run({"/usr/bin/curl", "-sS", "--max-time", "60", "-p", "-x",
                        fmt::format("http://127.0.0.1:{}", p.http), "-o", out2, url},
                       std::chrono::seconds(90));
    CHECK(b.status == 0);
    CHECK(sha_of_file(out2) == web.want);
}

}  // namespace

TEST_SUITE("integration.outbound") {
    TEST_CASE("outbound: no relay up: SOCKS5 reply 1 and HTTP 503 at once, never a hang") {
        Deployment d;
        d.make_keys({"agent1"});
        const uint16_t nobody = pick_port();  // nothing listens: the link never comes up
        const auto p = start_agent(d, nobody);
        const auto t0 = std::chrono::steady_clock::now();
        auto [s, code] = socks_connect(p.socks, "partner.example", 22);
        CHECK(code == 0x01);
        auto [h, status] = http_connect(p.http, "partner.example:443");
        CHECK(status.rfind("HTTP/1.1 503 ", 0) == 0);
        CHECK(std::chrono::steady_clock::now() - t0 < 3s);
        // The reply goes out before the event is written: wait for each.
        CHECK(d.agent.wait_for_output(
            "outbound-rejected DESTINATION=partner.example:22 REASON=no-relay", 5s));
        CHECK(d.agent.wait_for_output("DESTINATION=partner.example:443", 5s));
        CHECK(d.agent.running());
    }

    TEST_CASE("outbound: a caller outside allow_clients gets SOCKS5 reply 2 and HTTP 403") {
        Deployment d;
        d.make_keys({"agent1"});
        const auto p = start_agent(d, pick_port(),
                                   "allow_clients = [\"10.0.0.0/8\", \"127.0.0.0/8\"]\n"
                                   "deny_clients = [\"127.0.0.1/32\"]\n");
        auto [s, code] = socks_connect(p.socks, "partner.example", 22);
        CHECK(code == 0x02);
        auto [h, status] = http_connect(p.http, "partner.example:443");
        CHECK(status.rfind("HTTP/1.1 403 ", 0) == 0);
        REQUIRE(d.agent.wait_for_output("REASON=not-allowed", 5s));
        // 127.0.0.2 is allowed: it gets past admission (and hears no-relay).
        sp::UniqueFd fd = connect_to("127.0.0.1", p.socks, 2s, "127.0.0.2");
        REQUIRE(fd);
        set_timeouts(fd.get(), 5s);
        const Bytes greet{5, 1, 0};
        REQUIRE(send_all(fd.get(), greet.data(), greet.size()));
        CHECK(read_n(fd.get(), 2) == Bytes{5, 0});
        const auto req = socks_connect_request("partner.example", 22);
        REQUIRE(send_all(fd.get(), req.data(), req.size()));
        const auto reply = read_n(fd.get(), 10);
        REQUIRE(reply.size() == 10);
        CHECK(reply[1] == 0x01);
    }

    TEST_CASE("outbound: a reload applies allow_clients to new callers, listen stays") {
        Deployment d;
        d.make_keys({"agent1"});
        const uint16_t nobody = pick_port();
        const auto p = start_agent(d, nobody);
        CHECK(socks_connect(p.socks, "partner.example", 22).second == 0x01);
        Proxy moved{pick_port(), p.http};
        d.dir.write("agent.toml",
                    agent_toml(d, nobody, moved, "allow_clients = [\"10.0.0.0/8\"]\n"));
        d.agent.signal(SIGHUP);
        REQUIRE(d.agent.wait_for_output("configuration reloaded", 10s));
        CHECK(d.agent.output().find("outbound.socks5_listen") != std::string::npos);
        CHECK(socks_connect(p.socks, "partner.example", 22).second == 0x02);
        CHECK(http_connect(p.http, "partner.example:443").second.rfind("HTTP/1.1 403 ", 0) == 0);
        CHECK(refused("127.0.0.1", moved.socks));
    }

    TEST_CASE("outbound: a binary upgrade hands the proxy's listeners to the new agent") {
        Deployment d;
        d.make_keys({"agent1"});
        const auto p = start_agent(d, pick_port());
        d.agent.signal(SIGUSR2);
        REQUIRE(d.agent.wait_for_output("REASON=handed-over", 30s));
        const auto log = d.agent.output();
        const auto at = log.find("upgrade: started pid ");
        REQUIRE(at != std::string::npos);
        const pid_t successor = std::stoi(log.substr(at + 21, 12));
        REQUIRE(successor > 0);
        CHECK(d.agent.wait(20s));  // the old agent drained and left
        // The sockets live on in the successor: callers are answered.
        CHECK(socks_connect(p.socks, "partner.example", 22).second == 0x01);
        CHECK(http_connect(p.http, "partner.example:443").second.rfind("HTTP/1.1 503 ", 0) == 0);
        ::kill(successor, SIGTERM);
        for (int i = 0; i < 200 && ::kill(successor, 0) == 0; ++i) {
            std::this_thread::sleep_for(50ms);
        }
        if (::kill(successor, 0) == 0) {
            ::kill(successor, SIGKILL);
            FAIL("the successor did not stop on SIGTERM");
        }
    }

    TEST_CASE("outbound: malformed requests are answered and logged as bad-request") {
        Deployment d;
        d.make_keys({"agent1"});
        const auto p = start_agent(d, pick_port());
        {  // BIND: command not supported
            sp::UniqueFd fd = connect_to("127.0.0.1", p.socks);
            set_timeouts(fd.get(), 5s);
            const Bytes in{5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 22};
            REQUIRE(send_all(fd.get(), in.data(), in.size()));
            const auto got = as_bytes(recv_all(fd.get(), 64));
            CHECK(got == Bytes{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0});
        }
        {  // unknown address type
            sp::UniqueFd fd = connect_to("127.0.0.1", p.socks);
            set_timeouts(fd.get(), 5s);
            const Bytes in{5, 1, 0, 5, 1, 0, 9, 0, 0};
            REQUIRE(send_all(fd.get(), in.data(), in.size()));
            const auto got = as_bytes(recv_all(fd.get(), 64));
            REQUIRE(got.size() == 12);
            CHECK(got[3] == 8);
        }
        {  // not SOCKS at all: closed without an answer
            sp::UniqueFd fd = connect_to("127.0.0.1", p.socks);
            set_timeouts(fd.get(), 5s);
            const std::string in = "GET / HTTP/1.1\r\n\r\n";
            REQUIRE(send_all(fd.get(), in.data(), in.size()));
            CHECK(recv_all(fd.get(), 64).empty());
        }
        {  // GET to the CONNECT proxy
            sp::UniqueFd fd = connect_to("127.0.0.1", p.http);
            set_timeouts(fd.get(), 5s);
            const std::string in = "GET http://partner.example/ HTTP/1.1\r\nHost: x\r\n\r\n";
            REQUIRE(send_all(fd.get(), in.data(), in.size()));
            CHECK(recv_all(fd.get(), 4096).rfind("HTTP/1.1 405 ", 0) == 0);
        }
        {  // a CONNECT target without a port
            auto [fd, status] = http_connect(p.http, "partner.example");
            CHECK(status.rfind("HTTP/1.1 400 ", 0) == 0);
        }
        for (int i = 0; i < 100 && count_occurrences(d.agent.output(), "REASON=bad-request") < 5;
             ++i) {
            std::this_thread::sleep_for(50ms);
        }
        CHECK(count_occurrences(d.agent.output(), "REASON=bad-request") >= 5);
        CHECK(d.agent.running());
    }

    TEST_CASE("outbound: users: a file open to others is refused at start; good and bad logins") {
        Deployment d;
        d.make_keys({"agent1"});
        const std::string users = d.dir.write("outbound.users", "alice:s3cret\n", 0644);
        Proxy p{pick_port(), pick_port()};
        const auto cfg = d.dir.write(
            "agent.toml", agent_toml(d, pick_port(), p, fmt::format("users = \"{}\"\n", users)));
        auto check = run({agent_bin(), "--check-config", "-c", cfg}, 10s);
        CHECK(check.status != 0);
        CHECK(check.output.find("users file is accessible by group or others") !=
              std::string::npos);
        d.agent = d.start_agent_process(cfg, "agent.log");
        const auto rc = d.agent.wait(10s);
        REQUIRE(rc);
        CHECK(*rc != 0);
        CHECK(d.agent.output().find("chmod 600 " + users) != std::string::npos);

        REQUIRE(::chmod(users.c_str(), 0600) == 0);
        d.agent = d.start_agent_process(cfg, "agent2.log");
        REQUIRE(d.agent.wait_for_output("started", 10s));
        REQUIRE(connect_retry("127.0.0.1", p.socks, 5s));
        {  // no-auth only: refused
            sp::UniqueFd fd = connect_to("127.0.0.1", p.socks);
            set_timeouts(fd.get(), 5s);
            const Bytes greet{5, 1, 0};
            REQUIRE(send_all(fd.get(), greet.data(), greet.size()));
            CHECK(read_n(fd.get(), 2) == Bytes{5, 0xff});
        }
        {  // wrong password
            sp::UniqueFd fd = connect_to("127.0.0.1", p.socks);
            set_timeouts(fd.get(), 5s);
            Bytes in{5, 1, 2, 1, 5, 'a', 'l', 'i', 'c', 'e', 2, 'n', 'o'};
            REQUIRE(send_all(fd.get(), in.data(), in.size()));
            CHECK(read_n(fd.get(), 4) == Bytes{5, 2, 1, 1});
        }
        {  // right password: past authentication, then no relay
            sp::UniqueFd fd = connect_to("127.0.0.1", p.socks);
            set_timeouts(fd.get(), 5s);
            Bytes in{5, 1, 2, 1, 5, 'a', 'l', 'i', 'c', 'e', 6, 's', '3', 'c', 'r', 'e', 't'};
            const auto req = socks_connect_request("partner.example", 22);
            in.insert(in.end(), req.begin(), req.end());
            REQUIRE(send_all(fd.get(), in.data(), in.size()));
            const auto got = read_n(fd.get(), 14);
            REQUIRE(got.size() == 14);
            CHECK(Bytes(got.begin(), got.begin() + 4) == Bytes{5, 2, 1, 0});
            CHECK(got[5] == 0x01);
        }
        {  // HTTP without and with credentials (YWxpY2U6czNjcmV0 = alice:s3cret)
            auto [a, no_auth] = http_connect(p.http, "partner.example:443");
            CHECK(no_auth.rfind("HTTP/1.1 407 ", 0) == 0);
            auto [b, with_auth] = http_connect(p.http, "partner.example:443",
                                               "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n");
            CHECK(with_auth.rfind("HTTP/1.1 503 ", 0) == 0);
        }
    }

    TEST_CASE("outbound: SOCKS5 and CONNECT through a relay, byte-exact; refusals map to codes") {
        Deployment d;
        d.make_keys({"agent1"});
        OutboundRelay relay(
            d.agent_key("agent1"),
            [](const control::OutboundRequest& o) -> std::optional<control::OutboundResult> {
                control::OutboundResult r;
                if (o.host == "denied.example") {
                    r.status = control::OutboundStatus::Denied;
                } else if (o.host == "refused.example") {
                    r.status = control::OutboundStatus::ConnectFailed;
                    r.error = ECONNREFUSED;
                } else if (o.host == "busy.example") {
                    r.status = control::OutboundStatus::Limit;
                } else if (o.host == "unknown.example") {
                    r.status = control::OutboundStatus::ResolveFailed;
                } else if (o.host == "silent.example") {
                    return std::nullopt;
                }
                return r;
            });
        const auto p = start_agent(d, relay.port());
        REQUIRE(d.agent.wait_for_output("relay-connected", 10s));
        TestServer partner(TestServer::Mode::HashReply, "127.0.0.3");

        SUBCASE("SOCKS5, 8 MiB each way checked by SHA-256") {
            auto [fd, code] = socks_connect(p.socks, "127.0.0.3", partner.port());
            REQUIRE(code == 0x00);
            std::string sent;
            CHECK(push_and_hash(fd.get(), 8U << 20, sent) == sent);
            fd.reset();
            REQUIRE(d.agent.wait_for_output("outbound-close", 10s));
            const auto log = d.agent.output();
            CHECK(log.find(fmt::format("outbound-open SESSION_ID=0000000005e55001 "
                                       "DESTINATION=127.0.0.3:{} RESOLVED_ADDR=127.0.0.3:{}",
                                       partner.port(), partner.port())) != std::string::npos);
            CHECK(log.find(fmt::format("BYTES_UP={}", 8U << 20)) != std::string::npos);
        }
        SUBCASE("HTTP CONNECT, bytes behind the request head go first") {
            sp::UniqueFd fd = connect_to("127.0.0.1", p.http);
            set_timeouts(fd.get(), 10s);
            const std::string head =
                fmt::format("CONNECT 127.0.0.3:{} HTTP/1.1\r\n\r\nearly", partner.port());
            REQUIRE(send_all(fd.get(), head.data(), head.size()));
            const std::string established = "HTTP/1.1 200 Connection established\r\n\r\n";
            CHECK(recv_n(fd.get(), established.size()) == established);
            std::string sent;
            const std::string got = push_and_hash(fd.get(), 1U << 20, sent);
            std::string all = "early";
            std::vector<char> buf(1U << 20);
            fill_pattern(7, 0, buf.data(), buf.size());
            all.append(buf.data(), buf.size());
            CHECK(got == sha256_hex(all));
        }
        SUBCASE("the relay's refusals") {
            struct Row {
                const char* host;
                uint8_t socks;
                const char* http;
                const char* reason;
            };
            const std::vector<Row> rows = {
                {"denied.example", 0x02, "HTTP/1.1 403 ", "REASON=not-allowed"},
                {"refused.example", 0x05, "HTTP/1.1 502 ", "REASON=connect-failed"},
                {"busy.example", 0x01, "HTTP/1.1 503 ", "REASON=limit"},
                {"unknown.example", 0x04, "HTTP/1.1 502 ", "REASON=resolve-failed"},
            };
            for (const auto& r : rows) {
                CAPTURE(r.host);
                auto [s, code] = socks_connect(p.socks, r.host, 443);
                CHECK(code == r.socks);
                auto [h, status] = http_connect(p.http, fmt::format("{}:443", r.host));
                CHECK(status.rfind(r.http, 0) == 0);
                CHECK(d.agent.wait_for_output(r.reason, 5s));
            }
        }
        SUBCASE("a relay that drops its control channel fails the waiting request: no-relay") {
            sp::UniqueFd fd = connect_to("127.0.0.1", p.socks);
            set_timeouts(fd.get(), 10s);
            Bytes in{5, 1, 0};
            const auto req = socks_connect_request("silent.example", 22);
            in.insert(in.end(), req.begin(), req.end());
            REQUIRE(send_all(fd.get(), in.data(), in.size()));
            CHECK(read_n(fd.get(), 2) == Bytes{5, 0});
            for (int i = 0; i < 100 && relay.requests() == 0; ++i) {
                std::this_thread::sleep_for(20ms);
            }
            REQUIRE(relay.requests() == 1);
            const auto t0 = std::chrono::steady_clock::now();
            relay.drop_control();
            const auto reply = read_n(fd.get(), 10);
            REQUIRE(reply.size() == 10);
            CHECK(reply[1] == 0x01);
            CHECK(std::chrono::steady_clock::now() - t0 < 5s);
            CHECK(d.agent.wait_for_output("DESTINATION=silent.example:22 REASON=no-relay", 5s));
        }
    }

    TEST_CASE("outbound: curl --socks5-hostname and curl -x, 64 MiB byte-exact") {
        Deployment d;
        d.make_keys({"agent1"});
        OutboundRelay relay(
            d.agent_key("agent1"),
            [](const control::OutboundRequest&) -> std::optional<control::OutboundResult> {
                return control::OutboundResult{};
            });
        const auto p = start_agent(d, relay.port());
        REQUIRE(d.agent.wait_for_output("relay-connected", 10s));
        Partner web(d, "127.0.0.4");
        curl_both(d, p, web);
        CHECK(relay.channels() == 2);
    }

    TEST_CASE(
        "outbound: through the real relay, curl 64 MiB byte-exact both ways; egress refused") {
        Deployment d;
        d.control_port = pick_port();
        d.make_keys({"agent1"});
        Partner web(d, "127.0.0.5");
        d.start_relay(fmt::format("[outbound]\nallow = [\"127.0.0.5/32:{}\"]\n", web.port));
        REQUIRE(d.relay.wait_for_output("control-listen", 10s));
        const auto p = start_agent(d, d.control_port);
        REQUIRE(d.agent.wait_for_output("relay-connected", 10s));
        curl_both(d, p, web);
        // The same SESSION_ID on both sides.
        REQUIRE(d.agent.wait_for_output("outbound-close", 10s));
        const auto alog = d.agent.output();
        const auto at = alog.find("outbound-open SESSION_ID=");
        REQUIRE(at != std::string::npos);
        const std::string sid = alog.substr(at + 25, 16);
        CHECK(d.relay.wait_for_output("SESSION_ID=" + sid, 5s));
        CHECK(alog.find(fmt::format("RESOLVED_ADDR=127.0.0.5:{}", web.port)) != std::string::npos);
        // Outside the relay's allow list: SOCKS5 2, HTTP 403, both daemons log it.
        CHECK(socks_connect(p.socks, "127.0.0.6", web.port).second == 0x02);
        CHECK(http_connect(p.http, fmt::format("127.0.0.5:{}", web.port + 1))
                  .second.rfind("HTTP/1.1 403 ", 0) == 0);
        CHECK(d.agent.wait_for_output("REASON=not-allowed", 5s));
        CHECK(d.relay.wait_for_output("outbound-rejected", 5s));
        // The relay goes away: a clean, immediate answer, never a hang.
        (void)d.relay.stop(10s);
        for (int i = 0; i < 100 && d.agent.output().find("relay-disconnected") == std::string::npos;
             ++i) {
            std::this_thread::sleep_for(50ms);
        }
        const auto t0 = std::chrono::steady_clock::now();
        CHECK(socks_connect(p.socks, "127.0.0.5", web.port).second == 0x01);
        CHECK(std::chrono::steady_clock::now() - t0 < 3s);
    }
}
