// SPDX-License-Identifier: Apache-2.0
// The agent's data channels against hostile and ordinary relays: a scripted
// relay in this process (real TLS, real frames) that binds channels to no
// service or kills every channel and asks for more; then the real relay for
// 20,000 short sessions (agent RSS) and a reload that drops a relay while
// sessions through it are spliced or still looking for a backend.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <sstream>
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

// Under ASan freed memory sits in a quarantine of up to 256 MiB and the
// allocator keeps its own caches: RSS then says nothing about leaks (the
// leak checker at exit does). The sessions still run; only the bound is off.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

// /proc/PID/status VmRSS, in KiB.
long vm_rss_kib(pid_t pid) {
    std::ifstream f(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::stol(line.substr(6));
        }
    }
    return -1;
}

// utime + stime of PID from /proc/PID/stat, in seconds.
double cpu_seconds(pid_t pid) {
    std::ifstream f(fmt::format("/proc/{}/stat", pid));
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto close = all.rfind(')');
    std::istringstream rest(all.substr(close + 2));
    std::string field;
    unsigned long long ticks = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14 || i == 15) {
            ticks += std::stoull(field);
        }
    }
    return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

control::Token token(uint32_t n) {
    control::Token t{};
    for (size_t i = 0; i < 4; ++i) {
        t[i] = static_cast<uint8_t>(n >> (8 * i));
    }
    return t;
}

// A relay reduced to what an agent sees: a PSK TLS control channel speaking
// real frames, and data channels classified by their first bytes on the
// same port. What it does with each data channel is the scenario.
class ScriptedRelay final {
public:
    enum class Mode {
        EmptyService,   // bind every channel to service "" and keep it open
        DeadOnArrival,  // close every channel after its hello, ask for two more
    };

    ScriptedRelay(Mode mode, const std::string& key_file, uint32_t first_tokens)
        : mode_(mode), first_tokens_(first_tokens) {
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
        listener_ = sp::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(listener_.get(), 4096) == 0);
        socklen_t len = sizeof a;
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~ScriptedRelay() {
        stop_ = true;
        thread_.join();
    }
    ScriptedRelay(const ScriptedRelay&) = delete;
    ScriptedRelay& operator=(const ScriptedRelay&) = delete;

    [[nodiscard]] uint16_t port() const { return port_; }
    [[nodiscard]] int channels() const { return channels_.load(); }
    [[nodiscard]] int closed_by_agent() const { return closed_by_agent_.load(); }
    [[nodiscard]] int tokens_sent() const { return tokens_sent_.load(); }
    [[nodiscard]] bool ready() const { return ready_.load(); }
    /// Sends OPEN_CHANNELS with `n` more tokens (from the relay's thread).
    void open(uint32_t n) { more_ += n; }

private:
    void run() {
        std::vector<pollfd> fds;
        std::map<int, sp::UniqueFd> held;  // EmptyService: channels we keep open
        while (!stop_) {
            fds.clear();
            fds.push_back({listener_.get(), POLLIN, 0});
            if (peer_) {
                fds.push_back({peer_->fd(),
                               static_cast<short>(POLLIN | (peer_->poll_events() & POLLOUT)), 0});
            }
            for (const auto& [fd, u] : held) {
                fds.push_back({fd, POLLIN, 0});
            }
            ::poll(fds.data(), fds.size(), 20);
            for (const auto& p : fds) {
                if (p.revents == 0) {
                    continue;
                }
                if (p.fd == listener_.get()) {
                    accept_one(held);
                } else if (peer_ && p.fd == peer_->fd()) {
                    (void)peer_->flush();
                    (void)peer_->read_frames([this](control::Message&& m) {
                        if (std::holds_alternative<control::Hello>(m)) {
                            (void)peer_->send(control::HelloAck{1, "scripted", 600000, 1});
                            ready_ = true;
                            more_ += first_tokens_;
                        }
                        return true;
                    });
                } else if (auto it = held.find(p.fd); it != held.end()) {
                    char b = 0;
                    if (::recv(p.fd, &b, 1, MSG_DONTWAIT) == 0) {
                        ++closed_by_agent_;
                        held.erase(it);
                    }
                }
            }
            if (peer_ && ready_ && more_ > 0) {
                control::OpenChannels oc;
                const uint32_t n = std::min<uint32_t>(more_, control::kMaxTokens);
                for (uint32_t i = 0; i < n; ++i) {
                    oc.tokens.push_back(token(next_token_++));
                }
                more_ -= n;
                tokens_sent_ += static_cast<int>(n);
                (void)peer_->send(oc);
            }
        }
    }

    void accept_one(std::map<int, sp::UniqueFd>& held) {
        sp::UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) {
            return;
        }
        set_timeouts(c.get(), 2s);
        uint8_t first = 0;
        if (::recv(c.get(), &first, 1, MSG_PEEK) != 1) {
            return;
        }
        if (first == 0x16) {  // TLS: the control channel
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
        if (recv_n(c.get(), control::kChannelHelloSize).size() != control::kChannelHelloSize) {
            return;
        }
        ++channels_;
        if (mode_ == Mode::DeadOnArrival) {
            more_ += 2;  // what the old relay did for a waiting client: two replacements
            return;      // closing `c` kills the channel on arrival
        }
        const auto header = control::encode_binding(control::Binding{
            static_cast<uint64_t>(channels_.load()), "", "192.0.2.1:5000", "127.0.0.1:2222"});
        (void)send_all(c.get(), header->data(), header->size());
        const int fd = c.get();
        held.emplace(fd, std::move(c));
    }

    Mode mode_;
    uint32_t first_tokens_;
    sp::config::Key key_;
    std::optional<control::TlsContext> ctx_;
    sp::UniqueFd listener_;
    uint16_t port_ = 0;
    std::unique_ptr<control::FramedPeer> peer_;
    uint32_t more_ = 0;
    uint32_t next_token_ = 1;
    std::atomic<bool> stop_{false};
    std::atomic<bool> ready_{false};
    std::atomic<int> channels_{0};
    std::atomic<int> closed_by_agent_{0};
    std::atomic<int> tokens_sent_{0};
    std::thread thread_;
};

std::string agent_toml(Deployment& d, uint16_t relay_port, unsigned pool,
                       const std::string& services) {
    return fmt::format(R"([agent]
name = "agent1"
status_socket = "{}/agent1.sock"
pool = {}
threads = 2

[[relay]]
address = "127.0.0.1:{}"
key = "{}"

{}
)",
                       d.dir.path(), pool, relay_port, d.agent_key("agent1"), services);
}

// Reads to EOF, answers with the hex SHA-256 of what it read, closes: one
// thread per listener, one connection at a time (a short session each).
class HashServer final {
public:
    HashServer() {
        // Non-blocking: four threads poll it, and the losers of a race must
        // not block in accept. Accepted sockets are blocking.
        listener_ = sp::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        (void)::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
        (void)::listen(listener_.get(), 1024);
        socklen_t len = sizeof a;
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        threads_.reserve(4);
        for (int i = 0; i < 4; ++i) {
            threads_.emplace_back([this] {
                while (!stop_) {
                    pollfd p{listener_.get(), POLLIN, 0};
                    if (::poll(&p, 1, 50) <= 0) {
                        continue;
                    }
                    sp::UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
                    if (!c) {
                        continue;
                    }
                    set_timeouts(c.get(), 5s);
                    const std::string got = recv_all(c.get());
                    const std::string h = sha256_hex(got);
                    (void)send_all(c.get(), h.data(), h.size());
                }
            });
        }
    }
    ~HashServer() {
        stop_ = true;
        for (auto& t : threads_) {
            t.join();
        }
    }
    HashServer(const HashServer&) = delete;
    HashServer& operator=(const HashServer&) = delete;
    [[nodiscard]] uint16_t port() const { return port_; }

private:
    sp::UniqueFd listener_;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::vector<std::thread> threads_;
};

// `count` sessions of 64 bytes each over `threads` clients; returns how many
// came back with the right hash.
int short_sessions(uint16_t port, int count, int threads) {
    std::atomic<int> good{0};
    std::atomic<int> next{0};
    std::vector<std::thread> ts;
    ts.reserve(static_cast<size_t>(threads));
    for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&] {
            std::string payload(64, 'x');
            for (int i = next++; i < count; i = next++) {
                std::snprintf(payload.data(), payload.size(), "%d", i);
                if (sp::test::exchange(port, payload) == sha256_hex(payload)) {
                    ++good;
                }
            }
        });
    }
    for (auto& t : ts) {
        t.join();
    }
    return good.load();
}

/// A relay of its own (`name`.toml, .sock, .log in d's directory) with the
/// deployment's keys, for tests with more than one relay.
Process start_relay_named(Deployment& d, const std::string& name, uint16_t control,
                          const std::string& allow_listen) {
    const auto cfg = d.dir.write(
        name + ".toml", fmt::format(R"([relay]
threads = 2
control_listen = ["127.0.0.1:{}"]
allow_listen = [{}]
status_socket = "{}/{}.sock"
drain_timeout_s = 5
[auth]
keys = "{}/relay.keys"
)",
                                    control, allow_listen, d.dir.path(), name, d.dir.path()));
    return Process::start({relay_bin(), "-c", cfg, "--log-target", "stderr"},
                          d.dir.path() + "/" + name + ".log");
}

}  // namespace

TEST_SUITE("integration.agent_channels") {
    TEST_CASE("agent: a binding header naming no service is dropped, logged, and never spins") {
        Deployment d;
        d.make_keys({"agent1"});
        ScriptedRelay relay(ScriptedRelay::Mode::EmptyService, d.agent_key("agent1"), 20);
        const auto cfg = d.dir.write(
            "agent.toml", agent_toml(d, relay.port(), 4,
                                     Deployment::service("svc", "127.0.0.1:2222", "127.0.0.1:9")));
        d.agent = d.start_agent_process(cfg, "agent.log");
        REQUIRE(d.agent.wait_for_output("relay-connected", 10s));
        // Every channel gets its header and is closed by the agent.
        for (int i = 0; i < 100 && relay.closed_by_agent() < 20; ++i) {
            std::this_thread::sleep_for(50ms);
        }
        CHECK(relay.channels() == 20);
        CHECK(relay.closed_by_agent() == 20);
        // The old agent took "" for "not decoded yet" and spun on the
        // readiness it had consumed. Now it idles.
        const double before = cpu_seconds(d.agent.pid());
        std::this_thread::sleep_for(3s);
        CHECK(cpu_seconds(d.agent.pid()) - before < 0.5);
        const auto log = d.agent.output();
        CHECK(log.find("REASON=unknown-service") != std::string::npos);
        // Rate-limited: a handful of lines per relay, not one per channel.
        CHECK(count_occurrences(log, "REASON=unknown-service") <= 10);
        CHECK(relay.channels() == 20);  // no channel dialled without a token
        CHECK(log.find("relay-disconnected") == std::string::npos);
    }

    TEST_CASE("agent: channels that die on arrival do not make the agent open a storm") {
        Deployment d;
        d.make_keys({"agent1"});
        ScriptedRelay relay(ScriptedRelay::Mode::DeadOnArrival, d.agent_key("agent1"), 8);
        const auto cfg = d.dir.write(
            "agent.toml", agent_toml(d, relay.port(), 8,
                                     Deployment::service("svc", "127.0.0.1:2222", "127.0.0.1:9")));
        d.agent = d.start_agent_process(cfg, "agent.log");
        REQUIRE(d.agent.wait_for_output("relay-connected", 10s));
        const auto start = std::chrono::steady_clock::now();
        std::this_thread::sleep_for(5s);
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        // Two replacement tokens for every dead channel grow without bound
        // (the old agent opened about 20,000 channels in 20 s). The agent's
        // budget: pool + one OPEN_CHANNELS at once, then 64 wasted per second.
        const double bound = 8 + 1024 + 64 * (secs + 2);
        MESSAGE("channels " << relay.channels() << ", tokens asked " << relay.tokens_sent());
        CHECK(relay.channels() <= bound);
        CHECK(relay.tokens_sent() > relay.channels());  // the relay kept asking
        const auto log = d.agent.output();
        CHECK(log.find("REASON=channel-") != std::string::npos);
        CHECK(count_occurrences(log, "resource-limit") <= 20);
        CHECK(d.agent.running());
    }

    TEST_CASE("agent: RSS stays flat over 20,000 short sessions") {
        HashServer backend;
        Deployment d;
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        d.start_agent(Deployment::service("svc", fmt::format("127.0.0.1:{}", port),
                                          fmt::format("127.0.0.1:{}", backend.port())),
                      32);
        REQUIRE(d.relay.wait_for_output("listener-open", 10s));
        REQUIRE(short_sessions(port, 2000, 4) == 2000);  // warm-up: pools, allocator arenas
        std::this_thread::sleep_for(500ms);
        const long before = vm_rss_kib(d.agent.pid());
        REQUIRE(before > 0);
        CHECK(short_sessions(port, 20000, 4) == 20000);
        std::this_thread::sleep_for(500ms);
        const long after = vm_rss_kib(d.agent.pid());
        MESSAGE("agent VmRSS " << before << " KiB -> " << after << " KiB");
        if (!kAddressSanitizer) {
            CHECK(after - before < 8 * 1024);
        }
    }

    TEST_CASE("agent: a reload that adds a relay never re-dials the unchanged one") {
        HashServer backend;
        Deployment d;
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        const uint16_t control2 = free_port();
        auto relay2 = start_relay_named(d, "relay2", control2, "\"127.0.0.2:1024-65535\"");
        const std::string service = Deployment::service(
            "echo", fmt::format("127.0.0.1:{}", port), fmt::format("127.0.0.1:{}", backend.port()));
        // Relay 2 may not open the service's address (allow_listen): the
        // port stays relay 1's alone, not a SO_REUSEPORT group of both.
        d.start_agent(service);
        REQUIRE(connect_retry("127.0.0.1", port, 10s));
        std::atomic<bool> stop{false};
        std::atomic<int> ok{0};
        std::atomic<int> failed{0};
        std::thread loop([&] {
            for (int i = 0; i < 3000 && !stop; ++i) {
                const std::string msg = fmt::format("client {}", i);
                if (sp::test::exchange(port, msg) == sha256_hex(msg)) {
                    ++ok;
                } else {
                    ++failed;
                }
            }
        });
        std::this_thread::sleep_for(300ms);
        std::string cfg = read_file(d.dir.path() + "/agent.toml");
        const auto at = cfg.find("[[service]]");
        REQUIRE(at != std::string::npos);
        cfg.insert(at, fmt::format("[[relay]]\naddress = \"127.0.0.1:{}\"\nkey = \"{}\"\n\n",
                                   control2, d.agent_key("agent1")));
        d.dir.write("agent.toml", cfg, 0600);
        d.agent.signal(SIGHUP);
        CHECK(relay2.wait_for_output("agent-connected", 10s));
        std::this_thread::sleep_for(500ms);
        stop = true;
        loop.join();
        MESSAGE("exchanges through relay 1 across the reload: " << ok.load() << " ok, "
                                                                << failed.load() << " failed");
        CHECK(failed.load() == 0);
        CHECK(ok.load() > 10);
        const std::string r1 = d.relay.output();
        CHECK(r1.find("agent-disconnected") == std::string::npos);
        CHECK(r1.find("listener-closed") == std::string::npos);
        CHECK(r1.find("agent-connected") == r1.rfind("agent-connected"));  // dialled once
        (void)relay2.stop();
    }

    TEST_CASE("agent: a reload names threads as restart-only and applies data_path and pool") {
        HashServer backend;
        Deployment d;
        d.listener_grace_ms = 5000;  // pool changes reconnect every relay
        d.make_keys({"agent1"});
        d.start_relay();
        REQUIRE(d.relay.wait_for_output(" started ", 10s));
        const uint16_t port = free_port();
        d.start_agent(Deployment::service("echo", fmt::format("127.0.0.1:{}", port),
                                          fmt::format("127.0.0.1:{}", backend.port())));
        REQUIRE(connect_retry("127.0.0.1", port, 10s));
        std::string cfg = read_file(d.dir.path() + "/agent.toml");
        for (const auto& [from, to] :
             {std::pair<std::string, std::string>{"threads = 2", "threads = 1"},
              {"pool = 4", "pool = 6"},
              {d.data_path == "copy" ? "data_path = \"copy\"" : "data_path = \"splice\"",
               d.data_path == "copy" ? "data_path = \"splice\"" : "data_path = \"copy\""}}) {
            const auto at = cfg.find(from);
            REQUIRE(at != std::string::npos);
            cfg.replace(at, from.size(), to);
        }
        d.dir.write("agent.toml", cfg, 0600);
        d.agent.signal(SIGHUP);
        CHECK(d.agent.wait_for_output("reload-failed REASON=restart-only", 10s));
        const std::string out = d.agent.output();
        CHECK(out.find("agent.threads") != std::string::npos);
        CHECK(out.find("agent.data_path") == std::string::npos);
        CHECK(out.find("agent.pool") == std::string::npos);
        CHECK(d.agent.wait_for_output("agent configuration reloaded", 5s));
        // The new pool reached the relay: it reconnected with pool 6.
        CHECK(d.relay.wait_for_output("pool 6", 10s));
        CHECK(sp::test::exchange(port, "after the reload") == sha256_hex("after the reload"));
    }

    TEST_CASE("agent: a reload with a shorter relay list keeps spliced sessions and survives") {
        HashServer backend;
        Deployment d;
        d.make_keys({"agent1"});
        // A backend that never answers a SYN: its accept queue is full.
        sp::UniqueFd slow(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(slow.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(slow.get(), 0) == 0);
        socklen_t len = sizeof a;
        ::getsockname(slow.get(), reinterpret_cast<sockaddr*>(&a), &len);
        const uint16_t slow_port = ntohs(a.sin_port);
        std::vector<sp::UniqueFd> fillers;
        fillers.reserve(2);
        for (int i = 0; i < 2; ++i) {
            fillers.push_back(connect_to("127.0.0.1", slow_port, 300ms));
        }
        // Relay 1 publishes "echo"; relay 2 (listed second) "stream" and "slow".
        const uint16_t p_echo = free_port();
        const uint16_t p_stream = free_port();
        const uint16_t p_slow = free_port();
        const uint16_t control2 = free_port();
        d.relay =
            start_relay_named(d, "relay1", d.control_port, fmt::format("\"127.0.0.1:{}\"", p_echo));
        auto relay2 =
            start_relay_named(d, "relay2", control2,
                              fmt::format("\"127.0.0.1:{}\", \"127.0.0.1:{}\"", p_stream, p_slow));
        const std::string services =
            Deployment::service("echo", fmt::format("127.0.0.1:{}", p_echo),
                                fmt::format("127.0.0.1:{}", backend.port())) +
            Deployment::service("stream", fmt::format("127.0.0.1:{}", p_stream),
                                fmt::format("127.0.0.1:{}", backend.port())) +
            Deployment::service("slow", fmt::format("127.0.0.1:{}", p_slow),
                                fmt::format("127.0.0.1:{}", slow_port));
        const auto relays = [&](bool both) {
            std::string r = fmt::format("[[relay]]\naddress = \"127.0.0.1:{}\"\nkey = \"{}\"\n",
                                        d.control_port, d.agent_key("agent1"));
            if (both) {
                r += fmt::format("[[relay]]\naddress = \"127.0.0.1:{}\"\nkey = \"{}\"\n", control2,
                                 d.agent_key("agent1"));
            }
            return fmt::format(
                "[agent]\nname = \"agent1\"\nstatus_socket = \"{}/agent1.sock\"\npool = "
                "4\nthreads = 2\n\n{}\n{}",
                d.dir.path(), r, services);
        };
        const auto cfg = d.dir.write("agent.toml", relays(true));
        d.agent = d.start_agent_process(cfg, "agent.log");
        REQUIRE(d.agent.wait_for_output("relay-connected", 10s, 2));
        REQUIRE(connect_retry("127.0.0.1", p_stream, 10s));
        REQUIRE(connect_retry("127.0.0.1", p_echo, 10s));

        // A session through relay 2, spliced, streaming across the reload.
        std::atomic<bool> stream_ok{false};
        std::thread stream([&] {
            auto fd = connect_to("127.0.0.1", p_stream);
            if (!fd) {
                return;
            }
            Sha256 mine;
            std::vector<char> buf(1 << 16);
            for (uint64_t off = 0; off < (32ULL << 20); off += buf.size()) {
                fill_pattern(11, off, buf.data(), buf.size());
                mine.update(buf.data(), buf.size());
                if (!send_all(fd.get(), buf.data(), buf.size())) {
                    return;
                }
                if (off % (4 << 20) == 0) {
                    std::this_thread::sleep_for(300ms);
                }
            }
            ::shutdown(fd.get(), SHUT_WR);
            stream_ok = recv_all(fd.get()) == mine.hex();
        });
        // A session through relay 2 whose backend connect is still pending
        // when the reload removes relay 2: its BACKEND_FAILED names a link
        // that is gone (the old agent indexed its link vector past the end).
        auto waiting = connect_to("127.0.0.1", p_slow);
        REQUIRE(waiting);
        std::this_thread::sleep_for(500ms);
        d.dir.write("agent.toml", relays(false));
        d.agent.signal(SIGHUP);
        CHECK(d.agent.wait_for_output("REASON=reload", 10s));
        CHECK(relay2.wait_for_output("agent-disconnected", 10s));
        // The slow session fails over no backend after its 5 s connect bound.
        CHECK(d.agent.wait_for_output("backend-failed", 15s));
        set_timeouts(waiting.get(), 10s);
        char b = 0;
        CHECK(::recv(waiting.get(), &b, 1, 0) == 0);  // closed by the relay, not hung
        stream.join();
        CHECK(stream_ok.load());
        CHECK(d.agent.running());
        CHECK(sp::test::exchange(p_echo, "after the reload") == sha256_hex("after the reload"));
        (void)relay2.stop();
    }
}
