// SPDX-License-Identifier: Apache-2.0
// `sallyport-bench serve`: one epoll thread per listener (SO_REUSEPORT on one
// port), each connection driven by the header its client sends (wire.hpp).
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/unique_fd.hpp"
#include "clock.hpp"
#include "json.hpp"
#include "net.hpp"
#include "pattern.hpp"
#include "signals.hpp"
#include "tuning.hpp"
#include "wire.hpp"
#include "workloads.hpp"

namespace sp::bench {
namespace {

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
    while (!stop_requested() && now_ns() < end) {
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

}  // namespace

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

}  // namespace sp::bench
