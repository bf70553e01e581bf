// SPDX-License-Identifier: Apache-2.0
// sallyport-bench: an iperf-style load generator and sink for bench/run. Every
// byte it moves is verified end to end (see wire.hpp and pattern.hpp); every
// run is bounded in time; targets are loopback unless --allow-remote.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "histogram.hpp"
#include "pattern.hpp"
#include "wire.hpp"

namespace sp::bench {
namespace {

constexpr size_t kChunk = 256 * size_t{1024};  // send/recv size for streams (iperf3 uses 128 KiB)
// Receives are smaller: the buffer and the pattern it is checked against then stay in L2.
constexpr size_t kRecvChunk = 128 * size_t{1024};
constexpr int64_t kDrainNs = 10'000'000'000;  // after the deadline, to finish and verify
constexpr int kMaxParallel = 256;

std::atomic<bool> g_stop{false};

void on_signal(int /*sig*/) {
    g_stop.store(true, std::memory_order_relaxed);
}

int64_t now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// ---------------------------------------------------------------- options

enum class Dir { Up, Down, Both };
enum class ServeMode { All, Sink, Source, Echo, Banner };

struct Options {
    std::string command;
    std::string address;
    bool allow_remote = false;
    bool json = false;
    bool expect_banner = false;
    int parallel = 1;
    int threads = 0;
    double seconds = 10;
    size_t size = 1;
    int count = 100;
    double hold = 5;
    uint32_t seed = 1;
    Dir dir = Dir::Up;
    ServeMode mode = ServeMode::All;
    std::string ready_file;
};

void usage(FILE* out) {
    std::fputs(
        "usage: sallyport-bench serve  --listen HOST:PORT [--mode all|sink|source|echo|banner]\n"
        "                              [--threads N] [-t SECONDS]\n"
        "       sallyport-bench stream --connect HOST:PORT [-P N] [--dir up|down|both] [-t S]\n"
        "       sallyport-bench rr     --connect HOST:PORT [-P N] [--size BYTES] [-t S]\n"
        "       sallyport-bench crr    --connect HOST:PORT [-P N] [--size BYTES] [-t S]\n"
        "       sallyport-bench idle   --connect HOST:PORT [-n N] [--hold S] [--ready-file F]\n"
        "common: --json  --seed N  --expect-banner  --allow-remote (default: loopback only)\n",
        out);
}

[[nodiscard]] Result<Options> parse_options(int argc, char** argv) {
    Options o;
    if (argc < 2) {
        return usage_error("missing command");
    }
    o.command = argv[1];
    bool seconds_set = false;
    for (int i = 2; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> Result<std::string_view> {
            if (i + 1 >= argc) {
                return usage_error("{} needs a value", a);
            }
            return std::string_view(argv[++i]);
        };
        auto number = [&]() -> Result<double> {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            char* end = nullptr;
            const std::string s(*v);
            const double d = std::strtod(s.c_str(), &end);
            if (end == s.c_str() || *end != '\0' || d < 0) {
                return usage_error("{}: bad number '{}'", a, s);
            }
            return d;
        };
        if (a == "--listen" || a == "--connect" || a == "-c") {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            o.address = *v;
        } else if (a == "--allow-remote") {
            o.allow_remote = true;
        } else if (a == "--json") {
            o.json = true;
        } else if (a == "--expect-banner") {
            o.expect_banner = true;
        } else if (a == "--ready-file") {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            o.ready_file = *v;
        } else if (a == "--dir" || a == "--mode") {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            if (a == "--dir") {
                if (*v == "up") {
                    o.dir = Dir::Up;
                } else if (*v == "down") {
                    o.dir = Dir::Down;
                } else if (*v == "both") {
                    o.dir = Dir::Both;
                } else {
                    return usage_error("--dir: expected up, down or both, got '{}'", *v);
                }
            } else if (*v == "all") {
                o.mode = ServeMode::All;
            } else if (*v == "sink") {
                o.mode = ServeMode::Sink;
            } else if (*v == "source") {
                o.mode = ServeMode::Source;
            } else if (*v == "echo") {
                o.mode = ServeMode::Echo;
            } else if (*v == "banner") {
                o.mode = ServeMode::Banner;
            } else {
                return usage_error("--mode: expected all, sink, source, echo or banner");
            }
        } else {
            auto n = number();
            if (!n) {
                return tl::unexpected(n.error());
            }
            if (a == "-P" || a == "--parallel") {
                o.parallel = static_cast<int>(*n);
            } else if (a == "--threads") {
                o.threads = static_cast<int>(*n);
            } else if (a == "-t" || a == "--time") {
                o.seconds = *n;
                seconds_set = true;
            } else if (a == "--size") {
                o.size = static_cast<size_t>(*n);
            } else if (a == "-n") {
                o.count = static_cast<int>(*n);
            } else if (a == "--hold") {
                o.hold = *n;
            } else if (a == "--seed") {
                o.seed = static_cast<uint32_t>(*n);
            } else {
                return usage_error("unknown option '{}'", a);
            }
        }
    }
    if (o.address.empty()) {
        return usage_error("{}: --listen/--connect HOST:PORT is required", o.command);
    }
    if (o.parallel < 1 || o.parallel > kMaxParallel) {
        return usage_error("-P must be 1..{}", kMaxParallel);
    }
    if (o.size < 1 || o.size > (size_t{1} << 24)) {
        return usage_error("--size must be 1..16777216");
    }
    if (o.command == "serve" && !seconds_set) {
        o.seconds = 3600;  // a forgotten server still goes away
    }
    if (o.seconds <= 0 || o.seconds > 86400 || o.hold > 3600 || o.count < 0 ||
        o.count > 1'000'000) {
        return usage_error("time, hold or count out of range");
    }
    return o;
}

// ---------------------------------------------------------------- sockets

[[nodiscard]] bool is_loopback(const IpAddress& ip) {
    const IpAddress u = ip.unmapped();
    if (u.family() == AF_INET) {
        return u.bytes()[0] == 127;
    }
    static constexpr std::array<uint8_t, 16> kV6Loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                         0, 0, 0, 0, 0, 0, 0, 1};
    return u.bytes() == kV6Loopback;
}

[[nodiscard]] Result<SocketAddress> resolve(std::string_view text, bool allow_remote) {
    std::string t(text);
    if (t.rfind("localhost:", 0) == 0) {
        t = "127.0.0.1:" + t.substr(10);
    }
    auto addr = SocketAddress::parse(t);
    if (!addr) {
        return usage_error("bad address '{}': {}", text, addr.error().describe());
    }
    if (!allow_remote && !is_loopback(addr->ip())) {
        return usage_error("'{}' is not a loopback address (pass --allow-remote to allow it)",
                           text);
    }
    return *addr;
}

void set_timeouts(int fd, int ms) noexcept {
    timeval tv{ms / 1000, (ms % 1000) * 1000L};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);  // best effort
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void set_nodelay(int fd) noexcept {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // latency only
}

/// Blocking socket connected to `addr` within `timeout_ms`, with 200 ms I/O
/// timeouts so that loops can check their deadlines; -errno on failure.
[[nodiscard]] int connect_to(const SocketAddress& addr, int timeout_ms, UniqueFd& ret_fd) noexcept {
    sockaddr_storage ss{};
    const socklen_t len = addr.to_sockaddr(ss);
    UniqueFd fd(socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        return -errno;
    }
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) {
        if (errno != EINPROGRESS) {
            return -errno;
        }
        pollfd p{fd.get(), POLLOUT, 0};
        const int r = poll(&p, 1, timeout_ms);
        if (r <= 0) {
            return r == 0 ? -ETIMEDOUT : -errno;
        }
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el) < 0) {
            return -errno;
        }
        if (err != 0) {
            return -err;
        }
    }
    const int flags = fcntl(fd.get(), F_GETFL);
    if (flags < 0 || fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
        return -errno;
    }
    set_timeouts(fd.get(), 200);
    ret_fd = std::move(fd);
    return 0;
}

/// Sends all `n` bytes before `deadline`; returns n, or -errno (-ETIMEDOUT).
[[nodiscard]] ssize_t send_all(int fd, const void* p, size_t n, int64_t deadline) noexcept {
    size_t done = 0;
    while (done < n) {
        const ssize_t r = send(fd, static_cast<const char*>(p) + done, n - done, MSG_NOSIGNAL);
        if (r > 0) {
            done += static_cast<size_t>(r);
        } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        if (done < n && now_ns() > deadline) {
            return -ETIMEDOUT;
        }
    }
    return static_cast<ssize_t>(done);
}

/// Receives exactly `n` bytes before `deadline`; returns n, fewer on EOF, or -errno.
[[nodiscard]] ssize_t recv_all(int fd, void* p, size_t n, int64_t deadline) noexcept {
    size_t done = 0;
    while (done < n) {
        const ssize_t r = recv(fd, static_cast<char*>(p) + done, n - done, 0);
        if (r == 0) {
            break;
        }
        if (r > 0) {
            done += static_cast<size_t>(r);
        } else if (errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        if (done < n && now_ns() > deadline) {
            return -ETIMEDOUT;
        }
    }
    return static_cast<ssize_t>(done);
}

/// Reads and checks the server's banner; 0 when it matched, else -errno or -EPROTO.
[[nodiscard]] int read_banner(int fd, int64_t deadline) noexcept {
    char b[kBanner.size()];
    const ssize_t r = recv_all(fd, b, sizeof b, deadline);
    if (r < 0) {
        return static_cast<int>(r);
    }
    return (static_cast<size_t>(r) == sizeof b && std::string_view(b, sizeof b) == kBanner)
               ? 0
               : -EPROTO;
}

/// Connect, optional banner, header: the opening every client mode shares.
[[nodiscard]] int open_session(const Options& o, const SocketAddress& addr, const Header& h,
                               UniqueFd& ret_fd, int64_t deadline) noexcept {
    UniqueFd fd;
    int r = connect_to(addr, 5000, fd);
    if (r < 0) {
        return r;
    }
    if (o.expect_banner && (r = read_banner(fd.get(), deadline)) < 0) {
        return r;
    }
    const ssize_t s = send_all(fd.get(), &h, sizeof h, deadline);
    if (s < 0) {
        return static_cast<int>(s);
    }
    ret_fd = std::move(fd);
    return 0;
}

std::string err_text(int neg_errno) {
    return std::strerror(-neg_errno);
}

std::string json_str(std::string_view s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
            out += c;
        }
    }
    return out + "\"";
}

// ---------------------------------------------------------------- server

struct ServerTotals {
    uint64_t connections = 0;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    uint64_t mismatched = 0;  // Up-stream bytes that failed verification
    uint64_t bad_headers = 0;
    uint64_t errors = 0;  // resets and other socket errors
    uint64_t up_streams = 0;
    uint64_t down_streams = 0;
    uint64_t echo_sessions = 0;
};

class ServerWorker final {
public:
    ServerWorker(UniqueFd listener, ServeMode mode) : listener_(std::move(listener)), mode_(mode) {}

    [[nodiscard]] int run(int64_t end) noexcept;
    [[nodiscard]] const ServerTotals& totals() const noexcept { return totals_; }

private:
    enum class State { Banner, Header, Up, Trailer, Down, DownDone, Echo };
    struct Conn {
        UniqueFd fd;
        State state = State::Header;
        size_t got = 0;  // header bytes, banner bytes sent, or trailer bytes sent
        Header header;
        Trailer trailer;
        uint64_t rx = 0;
        uint64_t tx = 0;
        uint64_t echo_left = 0;
        std::unique_ptr<Pattern> pattern;
        std::vector<uint8_t> pending;
        size_t pending_off = 0;
    };

    void accept_all() noexcept;
    [[nodiscard]] bool handle(Conn& c, uint32_t events) noexcept;  // false: close it
    [[nodiscard]] bool start_op(Conn& c) noexcept;
    [[nodiscard]] bool flush_pending(Conn& c) noexcept;
    void want(Conn& c, uint32_t events) noexcept;
    void close_conn(Conn* c) noexcept;
    [[nodiscard]] bool io_error(ssize_t r) noexcept;

    UniqueFd listener_;
    UniqueFd epoll_;
    ServeMode mode_;
    ServerTotals totals_;
    std::unordered_map<Conn*, std::unique_ptr<Conn>> conns_;
    std::vector<uint8_t> buf_ = std::vector<uint8_t>(kRecvChunk);
};

bool ServerWorker::io_error(ssize_t r) noexcept {
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        return false;
    }
    ++totals_.errors;
    return true;
}

void ServerWorker::want(Conn& c, uint32_t events) noexcept {
    epoll_event ev{events, {.ptr = &c}};
    (void)epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);  // fd is registered
}

void ServerWorker::close_conn(Conn* c) noexcept {
    totals_.bytes_in += c->rx;
    totals_.bytes_out += c->tx;
    conns_.erase(c);  // closing the fd also removes it from the epoll set
}

void ServerWorker::accept_all() noexcept {
    for (int i = 0; i < 64; ++i) {
        const int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;  // EAGAIN, or EMFILE: retried on the next readiness
        }
        auto c = std::make_unique<Conn>();
        c->fd = UniqueFd(fd);
        set_nodelay(fd);
        ++totals_.connections;
        c->state = mode_ == ServeMode::Banner ? State::Banner : State::Header;
        epoll_event ev{c->state == State::Banner ? uint32_t{EPOLLOUT} : uint32_t{EPOLLIN},
                       {.ptr = c.get()}};
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
            ++totals_.errors;
            continue;
        }
        Conn* key = c.get();
        conns_.emplace(key, std::move(c));
    }
}

bool ServerWorker::start_op(Conn& c) noexcept {
    const auto op = static_cast<Op>(c.header.op);
    const bool allowed =
        c.header.magic == kHeaderMagic &&
        ((op == Op::Up &&
          (mode_ == ServeMode::Sink || mode_ == ServeMode::All || mode_ == ServeMode::Banner)) ||
         (op == Op::Down &&
          (mode_ == ServeMode::Source || mode_ == ServeMode::All || mode_ == ServeMode::Banner)) ||
         (op == Op::Echo &&
          (mode_ == ServeMode::Echo || mode_ == ServeMode::All || mode_ == ServeMode::Banner)));
    if (!allowed) {
        ++totals_.bad_headers;
        return false;
    }
    c.got = 0;
    switch (op) {
        case Op::Up:
            ++totals_.up_streams;
            c.pattern = std::make_unique<Pattern>(c.header.seed);
            c.state = State::Up;
            break;
        case Op::Down:
            ++totals_.down_streams;
            c.pattern = std::make_unique<Pattern>(c.header.seed);
            c.state = State::Down;
            want(c, EPOLLIN | EPOLLOUT);
            break;
        case Op::Echo:
            ++totals_.echo_sessions;
            c.echo_left = c.header.length;
            c.state = State::Echo;
            break;
    }
    return true;
}

bool ServerWorker::flush_pending(Conn& c) noexcept {
    while (c.pending_off < c.pending.size()) {
        const ssize_t r = send(c.fd.get(), c.pending.data() + c.pending_off,
                               c.pending.size() - c.pending_off, MSG_NOSIGNAL);
        if (r <= 0) {
            return !io_error(r);
        }
        c.pending_off += static_cast<size_t>(r);
        c.tx += static_cast<uint64_t>(r);
    }
    c.pending.clear();
    c.pending_off = 0;
    return true;
}

bool ServerWorker::handle(Conn& c, uint32_t events) noexcept {
    const int fd = c.fd.get();
    // A few syscalls per wakeup, so one fast stream cannot starve the others.
    for (int round = 0; round < 8; ++round) {
        switch (c.state) {
            case State::Banner: {
                const ssize_t r =
                    send(fd, kBanner.data() + c.got, kBanner.size() - c.got, MSG_NOSIGNAL);
                if (r <= 0) {
                    return !io_error(r);
                }
                c.got += static_cast<size_t>(r);
                if (c.got == kBanner.size()) {
                    c.got = 0;
                    c.state = State::Header;
                    want(c, EPOLLIN);
                }
                return true;
            }
            case State::Header: {
                // Read exactly the header so payload bytes stay in the socket.
                auto* h = reinterpret_cast<uint8_t*>(&c.header);
                const ssize_t r = recv(fd, h + c.got, sizeof(Header) - c.got, 0);
                if (r == 0) {
                    return false;  // closed before saying anything: a probe, not an error
                }
                if (r < 0) {
                    return !io_error(r);
                }
                c.got += static_cast<size_t>(r);
                if (c.got == sizeof(Header) && !start_op(c)) {
                    return false;
                }
                break;
            }
            case State::Up: {
                const ssize_t r = recv(fd, buf_.data(), buf_.size(), 0);
                if (r == 0) {
                    c.trailer.bytes = c.rx;
                    c.trailer.mismatched = c.header.length != 0 && c.rx != c.header.length
                                               ? c.rx + 1
                                               : c.trailer.mismatched;
                    totals_.mismatched += c.trailer.mismatched;
                    c.state = State::Trailer;
                    c.got = 0;
                    want(c, EPOLLOUT);
                    return true;
                }
                if (r < 0) {
                    return !io_error(r);
                }
                c.trailer.mismatched +=
                    c.pattern->verify(c.rx, buf_.data(), static_cast<size_t>(r));
                c.rx += static_cast<uint64_t>(r);
                break;
            }
            case State::Trailer: {
                const auto* t = reinterpret_cast<const uint8_t*>(&c.trailer);
                const ssize_t r = send(fd, t + c.got, sizeof(Trailer) - c.got, MSG_NOSIGNAL);
                if (r <= 0) {
                    return !io_error(r);
                }
                c.got += static_cast<size_t>(r);
                return c.got < sizeof(Trailer);  // done: close
            }
            case State::Down:
            case State::DownDone: {
                if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    const ssize_t r = recv(fd, buf_.data(), buf_.size(), 0);
                    if (r == 0) {
                        (void)shutdown(fd, SHUT_WR);  // the client reads to our EOF
                        return false;
                    }
                    if (r > 0) {
                        ++totals_.bad_headers;  // the client must not send on a Down stream
                        return false;
                    }
                    if (io_error(r)) {
                        return false;
                    }
                    events &= ~uint32_t{EPOLLIN};
                }
                if (c.state == State::DownDone || !(events & EPOLLOUT)) {
                    return true;
                }
                size_t max = kChunk;
                if (c.header.length != 0) {
                    max = std::min<uint64_t>(max, c.header.length - c.tx);
                }
                const Pattern::Span s = c.pattern->at(c.tx, max);
                const ssize_t r = send(fd, s.data, s.size, MSG_NOSIGNAL);
                if (r <= 0) {
                    return !io_error(r);
                }
                c.tx += static_cast<uint64_t>(r);
                if (c.header.length != 0 && c.tx == c.header.length) {
                    (void)shutdown(fd, SHUT_WR);
                    c.state = State::DownDone;
                    want(c, EPOLLIN);
                    return true;
                }
                break;
            }
            case State::Echo: {
                if (!c.pending.empty()) {
                    if (!flush_pending(c)) {
                        return false;
                    }
                    if (!c.pending.empty()) {
                        return true;  // still blocked; EPOLLOUT is armed
                    }
                    if (c.header.length != 0 && c.echo_left == 0) {
                        return false;  // CRR: all echoed, we close first
                    }
                    want(c, EPOLLIN);
                }
                size_t max = buf_.size();
                if (c.header.length != 0) {
                    max = std::min<uint64_t>(max, c.echo_left);
                }
                const ssize_t r = recv(fd, buf_.data(), max, 0);
                if (r == 0) {
                    (void)shutdown(fd, SHUT_WR);
                    return false;
                }
                if (r < 0) {
                    return !io_error(r);
                }
                c.rx += static_cast<uint64_t>(r);
                if (c.header.length != 0) {
                    c.echo_left -= static_cast<uint64_t>(r);
                }
                const ssize_t w = send(fd, buf_.data(), static_cast<size_t>(r), MSG_NOSIGNAL);
                if (w < 0 && io_error(w)) {
                    return false;
                }
                const size_t sent = w > 0 ? static_cast<size_t>(w) : 0;
                c.tx += sent;
                if (sent < static_cast<size_t>(r)) {
                    c.pending.assign(buf_.begin() + static_cast<ptrdiff_t>(sent), buf_.begin() + r);
                    want(c, EPOLLOUT);
                    return true;
                }
                if (c.header.length != 0 && c.echo_left == 0) {
                    return false;
                }
                return true;
            }
        }
    }
    return true;
}

int ServerWorker::run(int64_t end) noexcept {
    epoll_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) {
        return -errno;
    }
    epoll_event lev{EPOLLIN, {.ptr = nullptr}};
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &lev) < 0) {
        return -errno;
    }
    std::vector<epoll_event> evs(256);
    while (!g_stop.load(std::memory_order_relaxed) && now_ns() < end) {
        const int n = epoll_wait(epoll_.get(), evs.data(), static_cast<int>(evs.size()), 200);
        for (int i = 0; i < n; ++i) {
            auto* c = static_cast<Conn*>(evs[static_cast<size_t>(i)].data.ptr);
            if (c == nullptr) {
                accept_all();
            } else if (!handle(*c, evs[static_cast<size_t>(i)].events)) {
                close_conn(c);
            }
        }
    }
    while (!conns_.empty()) {
        close_conn(conns_.begin()->first);
    }
    return 0;
}

[[nodiscard]] Result<UniqueFd> make_listener(const SocketAddress& addr) {
    UniqueFd fd(socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errno_error("socket");
    }
    int one = 1;
    (void)setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        return errno_error("SO_REUSEPORT");
    }
    sockaddr_storage ss{};
    const socklen_t len = addr.to_sockaddr(ss);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) {
        return errno_error("bind {}", addr.to_string());
    }
    if (listen(fd.get(), 4096) < 0) {
        return errno_error("listen");
    }
    return fd;
}

[[nodiscard]] Result<int> run_serve(const Options& o) {
    auto addr = resolve(o.address, o.allow_remote);
    if (!addr) {
        return tl::unexpected(addr.error());
    }
    const int threads = o.threads > 0
                            ? o.threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<UniqueFd> listeners;
    auto first = make_listener(*addr);
    if (!first) {
        return tl::unexpected(first.error());
    }
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    if (getsockname(first->get(), reinterpret_cast<sockaddr*>(&ss), &sl) < 0) {
        return errno_error("getsockname");
    }
    const auto bound = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), sl);
    listeners.push_back(std::move(*first));
    for (int i = 1; i < threads; ++i) {
        auto l = make_listener(*bound);  // same port: SO_REUSEPORT spreads the connections
        if (!l) {
            return tl::unexpected(l.error());
        }
        listeners.push_back(std::move(*l));
    }
    std::fprintf(stderr, "sallyport-bench: serving on %s with %d threads\n",
                 bound->to_string().c_str(), threads);
    const int64_t end = now_ns() + static_cast<int64_t>(o.seconds * 1e9);
    std::vector<std::unique_ptr<ServerWorker>> workers;
    workers.reserve(listeners.size());
    for (auto& l : listeners) {
        workers.push_back(std::make_unique<ServerWorker>(std::move(l), o.mode));
    }
    std::vector<std::thread> ts;
    ts.reserve(workers.size());
    for (auto& w : workers) {
        ts.emplace_back([&w, end] { (void)w->run(end); });
    }
    for (auto& t : ts) {
        t.join();
    }
    ServerTotals sum;
    for (auto& w : workers) {
        const ServerTotals& t = w->totals();
        sum.connections += t.connections;
        sum.bytes_in += t.bytes_in;
        sum.bytes_out += t.bytes_out;
        sum.mismatched += t.mismatched;
        sum.bad_headers += t.bad_headers;
        sum.errors += t.errors;
        sum.up_streams += t.up_streams;
        sum.down_streams += t.down_streams;
        sum.echo_sessions += t.echo_sessions;
    }
    std::printf(
        "{\"mode\":\"serve\",\"listen\":%s,\"connections\":%llu,\"bytes_in\":%llu,"
        "\"bytes_out\":%llu,\"mismatched\":%llu,\"bad_headers\":%llu,\"errors\":%llu,"
        "\"up_streams\":%llu,\"down_streams\":%llu,\"echo_sessions\":%llu}\n",
        json_str(bound->to_string()).c_str(), static_cast<unsigned long long>(sum.connections),
        static_cast<unsigned long long>(sum.bytes_in),
        static_cast<unsigned long long>(sum.bytes_out),
        static_cast<unsigned long long>(sum.mismatched),
        static_cast<unsigned long long>(sum.bad_headers),
        static_cast<unsigned long long>(sum.errors),
        static_cast<unsigned long long>(sum.up_streams),
        static_cast<unsigned long long>(sum.down_streams),
        static_cast<unsigned long long>(sum.echo_sessions));
    std::fflush(stdout);
    return sum.mismatched == 0 ? 0 : 1;
}

// ---------------------------------------------------------------- clients

/// Live counters the progress line reads; written by one client thread each.
struct alignas(64) Live {
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> ops{0};
};

/// Start line shared by client threads: each connects, then waits here, so
/// setup time never counts against the measured window.
struct StartGate {
    explicit StartGate(int n) : ready(n) {}
    std::latch ready;
    std::latch go{1};
    int64_t t0 = 0;
    int64_t deadline = 0;
};

void progress(const char* what, const std::vector<Live>& live, int64_t t0, double seconds,
              bool bytes_rate, const std::atomic<int>& running) {
    const bool tty = isatty(STDERR_FILENO) == 1;
    uint64_t last = 0;
    int64_t last_t = t0;
    while (running.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const int64_t t = now_ns();
        if (!tty || t - last_t < 1'000'000'000) {
            continue;
        }
        uint64_t cur = 0;
        for (const Live& l : live) {
            cur += bytes_rate ? l.bytes.load(std::memory_order_relaxed)
                              : l.ops.load(std::memory_order_relaxed);
        }
        const double dt = static_cast<double>(t - last_t) / 1e9;
        const double rate = static_cast<double>(cur - last) / dt;
        if (bytes_rate) {
            std::fprintf(stderr, "\r[%s] %5.1f/%.0f s  %8.2f Gbit/s   ", what,
                         static_cast<double>(t - t0) / 1e9, seconds, rate * 8 / 1e9);
        } else {
            std::fprintf(stderr, "\r[%s] %5.1f/%.0f s  %10.0f ops/s   ", what,
                         static_cast<double>(t - t0) / 1e9, seconds, rate);
        }
        last = cur;
        last_t = t;
    }
    if (tty) {
        std::fputs("\n", stderr);
    }
}

struct StreamResult {
    Dir dir = Dir::Up;
    uint64_t bytes_window = 0;  // moved before the deadline: the rate's numerator
    uint64_t bytes_total = 0;   // all bytes of the stream, verified
    uint64_t mismatched = 0;
    bool ok = false;
    std::string error;
};

void stream_thread(const Options& o, const SocketAddress& addr, Dir dir, uint32_t seed,
                   StartGate& gate, Live& live, StreamResult& res) {
    res.dir = dir;
    Header h;
    h.op = static_cast<uint8_t>(dir == Dir::Up ? Op::Up : Op::Down);
    h.seed = seed;
    UniqueFd fd;
    int r = open_session(o, addr, h, fd, now_ns() + 10'000'000'000);
    gate.ready.count_down();
    gate.go.wait();
    if (r < 0) {
        res.error = "open: " + err_text(r);
        return;
    }
    Pattern pattern(seed);
    const int64_t deadline = gate.deadline;
    const int64_t hard = deadline + kDrainNs;
    uint64_t off = 0;
    if (dir == Dir::Up) {
        while (now_ns() < deadline) {
            const Pattern::Span s = pattern.at(off, kChunk);
            const ssize_t n = send(fd.get(), s.data, s.size, MSG_NOSIGNAL);
            if (n > 0) {
                off += static_cast<uint64_t>(n);
                live.bytes.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                res.error = fmt::format("send: {}", std::strerror(errno));
                return;
            }
        }
        res.bytes_window = off;
        res.bytes_total = off;
        (void)shutdown(fd.get(), SHUT_WR);
        Trailer t;
        const ssize_t n = recv_all(fd.get(), &t, sizeof t, hard);
        if (n != static_cast<ssize_t>(sizeof t) || t.magic != kTrailerMagic) {
            res.error = n < 0 ? "trailer: " + err_text(static_cast<int>(n)) : "trailer: short";
            return;
        }
        res.mismatched = t.mismatched;
        if (t.bytes != off) {
            res.error = fmt::format("server received {} of {} bytes", t.bytes, off);
            return;
        }
        res.ok = t.mismatched == 0 && off > 0;
        return;
    }
    std::vector<uint8_t> buf(kRecvChunk);
    bool closing = false;
    for (;;) {
        const int64_t t = now_ns();
        if (!closing && t >= deadline) {
            res.bytes_window = off;
            (void)shutdown(fd.get(), SHUT_WR);  // asks the server to stop and send EOF
            closing = true;
        }
        if (t > hard) {
            res.error = "no EOF after the deadline";
            break;
        }
        const ssize_t n = recv(fd.get(), buf.data(), buf.size(), 0);
        if (n == 0) {
            if (!closing) {
                res.error = "early EOF";
                res.bytes_window = off;
            }
            res.ok = closing;
            break;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            res.error = fmt::format("recv: {}", std::strerror(errno));
            break;
        }
        res.mismatched += pattern.verify(off, buf.data(), static_cast<size_t>(n));
        off += static_cast<uint64_t>(n);
        if (!closing) {
            live.bytes.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
        }
    }
    res.bytes_total = off;
    res.ok = res.ok && res.mismatched == 0 && off > 0;
}

[[nodiscard]] Result<int> run_stream(const Options& o, const SocketAddress& addr) {
    std::vector<Dir> dirs;
    for (int i = 0; i < o.parallel; ++i) {
        if (o.dir != Dir::Down) {
            dirs.push_back(Dir::Up);
        }
        if (o.dir != Dir::Up) {
            dirs.push_back(Dir::Down);
        }
    }
    const size_t n = dirs.size();
    StartGate gate(static_cast<int>(n));
    std::vector<Live> live(n);
    std::vector<StreamResult> res(n);
    std::vector<std::thread> ts;
    for (size_t i = 0; i < n; ++i) {
        ts.emplace_back(stream_thread, std::cref(o), std::cref(addr), dirs[i],
                        o.seed * 1000 + static_cast<uint32_t>(i), std::ref(gate), std::ref(live[i]),
                        std::ref(res[i]));
    }
    gate.ready.wait();
    gate.t0 = now_ns();
    gate.deadline = gate.t0 + static_cast<int64_t>(o.seconds * 1e9);
    gate.go.count_down();
    std::atomic<int> running{1};
    std::thread prog(progress, "stream", std::cref(live), gate.t0, o.seconds, true,
                     std::cref(running));
    for (auto& t : ts) {
        t.join();
    }
    running = 0;
    prog.join();
    const double secs = static_cast<double>(gate.deadline - gate.t0) / 1e9;
    uint64_t total = 0;
    uint64_t verified = 0;
    uint64_t mismatched = 0;
    bool ok = true;
    std::string per;
    for (size_t i = 0; i < n; ++i) {
        const StreamResult& r = res[i];
        total += r.bytes_window;
        verified += r.ok ? r.bytes_total : 0;
        mismatched += r.mismatched;
        ok = ok && r.ok;
        per += fmt::format(
            "{}{{\"dir\":\"{}\",\"bytes\":{},\"gbps\":{:.3f},\"verified_bytes\":{},"
            "\"mismatched\":{},\"ok\":{},\"error\":{}}}",
            i ? "," : "", r.dir == Dir::Up ? "up" : "down", r.bytes_window,
            static_cast<double>(r.bytes_window) * 8 / secs / 1e9, r.ok ? r.bytes_total : 0,
            r.mismatched, r.ok, json_str(r.error));
    }
    const double gbps = static_cast<double>(total) * 8 / secs / 1e9;
    const char* dname = o.dir == Dir::Up ? "up" : o.dir == Dir::Down ? "down" : "both";
    if (o.json) {
        fmt::print(
            "{{\"mode\":\"stream\",\"dir\":\"{}\",\"streams\":{},\"seconds\":{:.3f},"
            "\"bytes\":{},\"gbps\":{:.3f},\"verified_bytes\":{},\"mismatched\":{},\"ok\":{},"
            "\"per_stream\":[{}]}}\n",
            dname, n, secs, total, gbps, verified, mismatched, ok, per);
    } else {
        fmt::print("stream {} x{}: {:.2f} Gbit/s over {:.1f} s, {} bytes verified, {} {}\n", dname,
                   n, gbps, secs, verified, mismatched ? "MISMATCHED" : "intact",
                   ok ? "ok" : "FAILED");
        for (size_t i = 0; i < n; ++i) {
            fmt::print("  #{} {}: {:.2f} Gbit/s{}{}\n", i, res[i].dir == Dir::Up ? "up" : "down",
                       static_cast<double>(res[i].bytes_window) * 8 / secs / 1e9,
                       res[i].error.empty() ? "" : "  error: ", res[i].error);
        }
    }
    return ok ? 0 : 1;
}

struct RrResult {
    Histogram hist;
    uint64_t ops = 0;
    uint64_t failed = 0;      // crr: connections that did not complete
    uint64_t mismatched = 0;  // responses that differed from the request
    std::string error;
};

/// Request `seq` of a session: `size` bytes of a seeded random block at an
/// offset that moves with seq, so a stale or misrouted response is caught.
struct RequestSource {
    RequestSource(uint32_t seed, size_t size) : size_(size), block_(size + 4096) {
        uint64_t s = mix64(seed);
        for (auto& b : block_) {
            s = mix64(s);
            b = static_cast<uint8_t>(s);
        }
    }
    [[nodiscard]] const uint8_t* request(uint64_t seq) const noexcept {
        return block_.data() + (mix64(seq) % 4096);
    }
    size_t size_;
    std::vector<uint8_t> block_;
};

void rr_thread(const Options& o, const SocketAddress& addr, uint32_t seed, StartGate& gate,
               Live& live, RrResult& res) {
    Header h;
    h.op = static_cast<uint8_t>(Op::Echo);
    h.seed = seed;
    UniqueFd fd;
    int r = open_session(o, addr, h, fd, now_ns() + 10'000'000'000);
    if (r == 0) {
        set_nodelay(fd.get());
    }
    gate.ready.count_down();
    gate.go.wait();
    if (r < 0) {
        res.error = "open: " + err_text(r);
        return;
    }
    const RequestSource src(seed, o.size);
    std::vector<uint8_t> resp(o.size);
    const int64_t hard = gate.deadline + kDrainNs;
    for (uint64_t seq = 0;; ++seq) {
        const int64_t t0 = now_ns();
        if (t0 >= gate.deadline) {
            break;
        }
        const uint8_t* req = src.request(seq);
        ssize_t n = send_all(fd.get(), req, o.size, hard);
        if (n >= 0) {
            n = recv_all(fd.get(), resp.data(), o.size, hard);
        }
        if (n != static_cast<ssize_t>(o.size)) {
            res.error = n < 0 ? err_text(static_cast<int>(n)) : "short response";
            ++res.failed;
            return;
        }
        res.hist.record(static_cast<uint64_t>(now_ns() - t0));
        res.mismatched += std::memcmp(req, resp.data(), o.size) != 0;
        ++res.ops;
        live.ops.fetch_add(1, std::memory_order_relaxed);
    }
    (void)shutdown(fd.get(), SHUT_WR);
    char b[64];
    (void)recv_all(fd.get(), b, sizeof b, hard);  // the server's EOF; nothing else expected
}

void crr_thread(const Options& o, const SocketAddress& addr, uint32_t seed, StartGate& gate,
                Live& live, RrResult& res) {
    gate.ready.count_down();
    gate.go.wait();
    const RequestSource src(seed, o.size);
    std::vector<uint8_t> msg(sizeof(Header) + o.size);
    std::vector<uint8_t> resp(o.size + 1);
    const int64_t hard = gate.deadline + kDrainNs;
    for (uint64_t seq = 0;; ++seq) {
        const int64_t t0 = now_ns();
        if (t0 >= gate.deadline) {
            break;
        }
        Header h;
        h.op = static_cast<uint8_t>(Op::Echo);
        h.seed = seed;
        h.length = o.size;
        std::memcpy(msg.data(), &h, sizeof h);
        std::memcpy(msg.data() + sizeof h, src.request(seq), o.size);
        UniqueFd fd;
        int r = connect_to(addr, 5000, fd);
        if (r == 0 && o.expect_banner) {
            r = read_banner(fd.get(), hard);
        }
        ssize_t n = r;
        if (r == 0) {
            set_nodelay(fd.get());
            n = send_all(fd.get(), msg.data(), msg.size(), hard);
        }
        int64_t first = 0;
        if (n >= 0) {
            n = recv(fd.get(), resp.data(), o.size, 0);
            while (n < 0 && (errno == EAGAIN || errno == EINTR) && now_ns() < hard) {
                n = recv(fd.get(), resp.data(), o.size, 0);
            }
            first = now_ns();
            if (n > 0 && static_cast<size_t>(n) < o.size) {
                const ssize_t m =
                    recv_all(fd.get(), resp.data() + n, o.size - static_cast<size_t>(n), hard);
                n = m < 0 ? m : n + m;
            }
            if (n == static_cast<ssize_t>(o.size)) {
                // The server closes after the echo: a clean EOF completes the exchange.
                const ssize_t e = recv_all(fd.get(), resp.data() + o.size, 1, hard);
                if (e != 0) {
                    n = -EPROTO;
                }
            }
        }
        if (n != static_cast<ssize_t>(o.size)) {
            ++res.failed;
            if (res.error.empty()) {
                res.error = n < 0 ? err_text(static_cast<int>(n)) : "short response";
            }
            if (res.failed > 1000) {
                return;
            }
            continue;
        }
        res.hist.record(static_cast<uint64_t>(first - t0));
        res.mismatched += std::memcmp(src.request(seq), resp.data(), o.size) != 0;
        ++res.ops;
        live.ops.fetch_add(1, std::memory_order_relaxed);
    }
}

std::string hist_json(const Histogram& h) {
    std::string cdf;
    for (const auto& [v, f] : h.cdf()) {
        cdf += fmt::format("{}[{:.3f},{:.6f}]", cdf.empty() ? "" : ",",
                           static_cast<double>(v) / 1e3, f);
    }
    return fmt::format(
        "\"latency_us\":{{\"count\":{},\"min\":{:.3f},\"mean\":{:.3f},\"p50\":{:.3f},"
        "\"p90\":{:.3f},\"p99\":{:.3f},\"p999\":{:.3f},\"max\":{:.3f}}},\"cdf_us\":[{}]",
        h.count(), static_cast<double>(h.min()) / 1e3, h.mean() / 1e3,
        static_cast<double>(h.quantile(0.5)) / 1e3, static_cast<double>(h.quantile(0.9)) / 1e3,
        static_cast<double>(h.quantile(0.99)) / 1e3, static_cast<double>(h.quantile(0.999)) / 1e3,
        static_cast<double>(h.max()) / 1e3, cdf);
}

[[nodiscard]] Result<int> run_rr(const Options& o, const SocketAddress& addr, bool crr) {
    const auto n = static_cast<size_t>(o.parallel);
    StartGate gate(static_cast<int>(n));
    std::vector<Live> live(n);
    std::vector<RrResult> res(n);
    std::vector<std::thread> ts;
    for (size_t i = 0; i < n; ++i) {
        ts.emplace_back(crr ? crr_thread : rr_thread, std::cref(o), std::cref(addr),
                        o.seed * 1000 + static_cast<uint32_t>(i), std::ref(gate), std::ref(live[i]),
                        std::ref(res[i]));
    }
    gate.ready.wait();
    gate.t0 = now_ns();
    gate.deadline = gate.t0 + static_cast<int64_t>(o.seconds * 1e9);
    gate.go.count_down();
    std::atomic<int> running{1};
    std::thread prog(progress, crr ? "crr" : "rr", std::cref(live), gate.t0, o.seconds, false,
                     std::cref(running));
    for (auto& t : ts) {
        t.join();
    }
    running = 0;
    prog.join();
    const double secs = static_cast<double>(now_ns() - gate.t0) / 1e9;
    Histogram all;
    uint64_t ops = 0;
    uint64_t failed = 0;
    uint64_t mismatched = 0;
    std::string error;
    for (const RrResult& r : res) {
        all.merge(r.hist);
        ops += r.ops;
        failed += r.failed;
        mismatched += r.mismatched;
        if (error.empty()) {
            error = r.error;
        }
    }
    // crr tolerates rare failed connections (reported); rr and integrity do not.
    const bool ok = ops > 0 && mismatched == 0 && (crr ? failed * 100 <= ops : failed == 0);
    const double rate = static_cast<double>(ops) / std::min(secs, o.seconds);
    if (o.json) {
        fmt::print(
            "{{\"mode\":\"{}\",\"streams\":{},\"size\":{},\"seconds\":{:.3f},\"ops\":{},"
            "\"ops_per_s\":{:.1f},\"failed\":{},\"mismatched\":{},\"ok\":{},\"error\":{},{}}}\n",
            crr ? "crr" : "rr", n, o.size, o.seconds, ops, rate, failed, mismatched, ok,
            json_str(error), hist_json(all));
    } else {
        fmt::print(
            "{} x{} size {}: {:.0f} {}/s  p50 {:.1f} us  p90 {:.1f}  p99 {:.1f}  p99.9 {:.1f}  "
            "failed {} mismatched {} {}{}\n",
            crr ? "crr" : "rr", n, o.size, rate, crr ? "conn" : "ops",
            static_cast<double>(all.quantile(0.5)) / 1e3,
            static_cast<double>(all.quantile(0.9)) / 1e3,
            static_cast<double>(all.quantile(0.99)) / 1e3,
            static_cast<double>(all.quantile(0.999)) / 1e3, failed, mismatched,
            ok ? "ok" : "FAILED ", error);
    }
    return ok ? 0 : 1;
}

/// The ping of session `i` in pass `pass`: 16 bytes out, the same 16 back.
struct Ping {
    Ping(uint64_t pass, size_t i) noexcept : words{mix64((pass << 40) + i), (pass << 40) + i} {}
    uint64_t words[2];
};

/// Pings through many sessions with at most `window` unanswered at once, so a
/// pass costs the path's throughput, not N round trips. `send(i)` writes
/// session i's opening (if any) and ping; `ret_ok[i]` is cleared for sessions
/// that fail or are not reached before `deadline`. Returns how many passed.
template <typename SendFn>
size_t ping_pass(std::vector<UniqueFd>& fds, size_t count, uint64_t pass, bool banner,
                 int64_t deadline, std::vector<bool>& ret_ok, SendFn&& send_fn) {
    constexpr size_t kWindow = 64;
    size_t passed = 0;
    auto confirm = [&](size_t j) {
        const int64_t t = now_ns();
        if (!ret_ok[j] || t > deadline) {
            ret_ok[j] = false;
            return;
        }
        const int64_t d = std::min(t + 5'000'000'000, deadline);
        const Ping want(pass, j);
        uint64_t got[2] = {};
        const bool good =
            (!banner || read_banner(fds[j].get(), d) == 0) &&
            recv_all(fds[j].get(), got, sizeof got, d) == static_cast<ssize_t>(sizeof got) &&
            std::memcmp(got, want.words, sizeof got) == 0;
        ret_ok[j] = good;
        passed += good;
    };
    for (size_t i = 0; i < count; ++i) {
        if (!send_fn(i)) {
            ret_ok[i] = false;
        }
        if (i >= kWindow) {
            confirm(i - kWindow);
        }
        if (now_ns() > deadline) {
            for (size_t j = i + 1; j < count; ++j) {
                ret_ok[j] = false;
            }
            count = i + 1;
            break;
        }
    }
    for (size_t j = count > kWindow ? count - kWindow : 0; j < count; ++j) {
        confirm(j);
    }
    return passed;
}

[[nodiscard]] Result<int> run_idle(const Options& o, const SocketAddress& addr) {
    const int64_t start = now_ns();
    const bool tty = isatty(STDERR_FILENO) == 1;
    const auto n = static_cast<size_t>(o.count);
    std::vector<UniqueFd> fds(n);
    std::vector<bool> ok(n, true);
    std::string error;
    // Pass 1: connect, header and first ping, pipelined. Bounded at 90 s.
    const size_t opened_ok =
        ping_pass(fds, n, 1, o.expect_banner, start + 90'000'000'000, ok, [&](size_t i) {
            if (g_stop.load()) {
                return false;
            }
            const int r = connect_to(addr, 5000, fds[i]);
            if (r < 0) {
                if (error.empty()) {
                    error = fmt::format("session {}: connect: {}", i, err_text(r));
                }
                return false;
            }
            struct {
                Header h;
                Ping p;
            } msg{Header{}, Ping(1, i)};
            msg.h.op = static_cast<uint8_t>(Op::Echo);
            msg.h.seed = o.seed;
            if (tty && i % 500 == 0) {
                std::fprintf(stderr, "\r[idle] %zu/%zu opening   ", i + 1, n);
            }
            return send_all(fds[i].get(), &msg, sizeof msg, now_ns() + 5'000'000'000) ==
                   static_cast<ssize_t>(sizeof msg);
        });
    size_t opened = 0;
    for (const UniqueFd& f : fds) {
        opened += f.valid();
    }
    const double open_s = static_cast<double>(now_ns() - start) / 1e9;
    if (tty) {
        std::fprintf(stderr, "\r[idle] %zu/%zu open and answering, holding %.0f s\n", opened_ok, n,
                     o.hold);
    }
    if (!o.ready_file.empty()) {
        if (FILE* f = std::fopen(o.ready_file.c_str(), "w")) {
            std::fprintf(f, "%zu\n", opened_ok);
            std::fclose(f);
        }
    }
    const int64_t hold_end = now_ns() + static_cast<int64_t>(o.hold * 1e9);
    while (now_ns() < hold_end && !g_stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // Pass 2: every session still carries bytes both ways. Bounded at 60 s.
    const int64_t check_start = now_ns();
    const size_t ok_count =
        ping_pass(fds, n, 2, false, check_start + 60'000'000'000, ok, [&](size_t i) {
            const Ping p(2, i);
            return ok[i] &&
                   send_all(fds[i].get(), p.words, sizeof p.words, now_ns() + 5'000'000'000) ==
                       static_cast<ssize_t>(sizeof p.words);
        });
    const double check_s = static_cast<double>(now_ns() - check_start) / 1e9;
    fds.clear();
    const bool pass = ok_count == n;
    if (pass) {
        error.clear();
    } else if (error.empty()) {
        error = "some sessions did not answer in time";
    }
    if (o.json) {
        fmt::print(
            "{{\"mode\":\"idle\",\"requested\":{},\"opened\":{},\"answered_first\":{},\"ok\":{},"
            "\"open_seconds\":{:.3f},\"hold_seconds\":{:.1f},\"check_seconds\":{:.3f},"
            "\"pass\":{},\"error\":{}}}\n",
            n, opened, opened_ok, ok_count, open_s, o.hold, check_s, pass, json_str(error));
    } else {
        fmt::print(
            "idle: {} of {} sessions held {:.0f} s and answered both pings (open {:.1f} s, "
            "check {:.1f} s){}{}\n",
            ok_count, n, o.hold, open_s, check_s, error.empty() ? "" : "; ", error);
    }
    return pass ? 0 : 1;
}

void raise_nofile() noexcept {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);  // idle needs many fds; best effort
    }
}

[[nodiscard]] Result<int> run(int argc, char** argv) {
    auto o = parse_options(argc, argv);
    if (!o) {
        return tl::unexpected(o.error());
    }
    raise_nofile();
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    if (o->command == "serve") {
        return run_serve(*o);
    }
    auto addr = resolve(o->address, o->allow_remote);
    if (!addr) {
        return tl::unexpected(addr.error());
    }
    if (o->command == "stream") {
        return run_stream(*o, *addr);
    }
    if (o->command == "rr" || o->command == "crr") {
        return run_rr(*o, *addr, o->command == "crr");
    }
    if (o->command == "idle") {
        return run_idle(*o, *addr);
    }
    return usage_error("unknown command '{}'", o->command);
}

}  // namespace
}  // namespace sp::bench

int main(int argc, char** argv) {
    if (argc >= 2 && (std::string_view(argv[1]) == "-h" || std::string_view(argv[1]) == "--help")) {
        sp::bench::usage(stdout);
        return 0;
    }
    auto r = sp::bench::run(argc, argv);
    if (!r) {
        std::fprintf(stderr, "sallyport-bench: %s\n", r.error().describe().c_str());
        if (r.error().kind == sp::ErrorKind::Usage) {
            sp::bench::usage(stderr);
        }
        return r.error().exit_code();
    }
    return *r;
}
