// SPDX-License-Identifier: Apache-2.0
// Test support for unit-io: loopback TCP pairs, a worker running in its own
// thread with a close log, and a poll-driven traffic generator that hashes
// what each end sends and receives.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include "base/unique_fd.hpp"
#include "io/worker.hpp"

namespace sp::io::test {

using namespace std::chrono_literals;

/// A connected TCP pair on 127.0.0.1 (both ends blocking).
struct TcpPair {
    UniqueFd a;  // the connecting end
    UniqueFd b;  // the accepted end
};

inline int loopback_listener(uint16_t& port) {
    static int fd = -1;
    static uint16_t p = 0;
    if (fd < 0) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
        REQUIRE(listen(fd, 4096) == 0);
        socklen_t len = sizeof(sa);
        REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
        p = ntohs(sa.sin_port);
    }
    port = p;
    return fd;
}

inline TcpPair tcp_pair() {
    uint16_t port;
    int lfd = loopback_listener(port);
    TcpPair out;
    out.a = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    REQUIRE(connect(out.a.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    out.b = UniqueFd(accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(out.b.valid());
    return out;
}

struct CloseRecord {
    SessionId id;
    uint64_t up = 0;
    uint64_t down = 0;
    std::string reason;
};

class CloseLog {
public:
    void add(SessionId id, const SessionEnd& e) {
        std::lock_guard<std::mutex> lock(m_);
        records_.push_back(CloseRecord{id, e.bytes_up, e.bytes_down, std::string(e.reason)});
        cv_.notify_all();
    }
    /// Waits until `n` sessions closed or `timeout` passed; returns the count.
    size_t wait(size_t n, std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait_for(lock, timeout, [&] { return records_.size() >= n; });
        return records_.size();
    }
    std::vector<CloseRecord> records() {
        std::lock_guard<std::mutex> lock(m_);
        return records_;
    }
    std::optional<CloseRecord> find(SessionId id) {
        std::lock_guard<std::mutex> lock(m_);
        for (auto& r : records_) {
            if (r.id == id) {
                return r;
            }
        }
        return std::nullopt;
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<CloseRecord> records_;
};

/// A worker on its own thread; stop_now + join on destruction.
class Harness {
public:
    explicit Harness(DataPath path, WorkerOptions opts = {}) {
        opts.data_path = path;
        auto w = Worker::create(opts);
        REQUIRE(w);
        worker = std::move(*w);
        worker->start();
    }
    ~Harness() {
        worker->stop_now();
        worker->join();
    }

    /// Runs fn on the worker thread and returns its result (bounded wait).
    template <typename Fn>
    auto call(Fn fn) -> decltype(fn(std::declval<Worker&>())) {
        using R = decltype(fn(std::declval<Worker&>()));
        auto prom = std::make_shared<std::promise<R>>();
        auto fut = prom->get_future();
        worker->post([prom, fn](Worker& w) mutable {
            if constexpr (std::is_void_v<R>) {
                fn(w);
                prom->set_value();
            } else {
                prom->set_value(fn(w));
            }
        });
        REQUIRE(fut.wait_for(10s) == std::future_status::ready);
        return fut.get();
    }

    /// Makes both sockets non-blocking, as Worker::start_session requires.
    SessionId start(UniqueFd client, UniqueFd peer, uint32_t idle_timeout_s = 0) {
        for (const UniqueFd* fd : {&client, &peer}) {
            REQUIRE(fcntl(fd->get(), F_SETFL, fcntl(fd->get(), F_GETFL) | O_NONBLOCK) == 0);
        }
        auto c = std::make_shared<UniqueFd>(std::move(client));
        auto p = std::make_shared<UniqueFd>(std::move(peer));
        CloseLog* log = &closes;
        return call([c, p, log, idle_timeout_s](Worker& w) {
            return w.start_session(
                std::move(*c), std::move(*p),
                [log](Worker&, SessionId id, const SessionEnd& e) { log->add(id, e); },
                idle_timeout_s);
        });
    }

    size_t pipes_in_use() {
        return call([](Worker& w) { return w.pipe_pool().in_use(); });
    }
    size_t buffers_in_use() {
        return call([](Worker& w) { return w.buffers_in_use(); });
    }
    size_t sessions() {
        return call([](Worker& w) { return w.session_count(); });
    }

    std::unique_ptr<Worker> worker;
    CloseLog closes;
};

/// A relayed connection as the outside sees it: `client` talks to the
/// worker's client side, `backend` is the far end of its peer side.
struct Link {
    UniqueFd client;
    UniqueFd backend;
    SessionId id;
};

inline Link make_link(Harness& h, uint32_t idle_timeout_s = 0) {
    TcpPair c = tcp_pair();
    TcpPair p = tcp_pair();
    Link l;
    l.client = std::move(c.a);
    l.backend = std::move(p.b);
    l.id = h.start(std::move(c.b), std::move(p.a), idle_timeout_s);
    return l;
}

constexpr uint64_t kFnvInit = 1469598103934665603ULL;

inline uint64_t fnv(uint64_t h, const unsigned char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    return h;
}

/// One socket end: sends `to_send` pseudo-random bytes (then optionally
/// shuts down writing) and reads until EOF, hashing both streams.
struct Endpoint {
    int fd = -1;
    uint64_t to_send = 0;
    bool shut_when_sent = true;
    bool expect_eof = true;
    bool read = true;  // false: never read (backpressure tests)

    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    uint64_t sent = 0;
    uint64_t send_hash = kFnvInit;
    bool shut = false;
    uint64_t received = 0;
    uint64_t recv_hash = kFnvInit;
    bool eof = false;
    int error = 0;  // errno of a failed recv/send
    std::vector<unsigned char> chunk;
    size_t chunk_off = 0;

    Endpoint(int f, uint64_t n, uint64_t seed) : fd(f), to_send(n), rng(seed | 1) {}

    bool finished() const {
        bool send_done = sent == to_send && (!shut_when_sent || shut);
        bool recv_done = !expect_eof || eof || error != 0;
        return (send_done || error != 0) && recv_done;
    }
    void refill() {
        size_t n = static_cast<size_t>(std::min<uint64_t>(65536, to_send - sent));
        chunk.resize(n);
        for (size_t i = 0; i < n; i += 8) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for (size_t j = 0; j < 8 && i + j < n; ++j) {
                chunk[i + j] = static_cast<unsigned char>(rng >> (8 * j));
            }
        }
        chunk_off = 0;
    }
};

/// Drives all endpoints with poll until each finished() or `timeout`.
/// Returns true when all finished.
inline bool drive(const std::vector<Endpoint*>& eps, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<unsigned char> rbuf(65536);
    std::vector<pollfd> pfds(eps.size());
    while (std::chrono::steady_clock::now() < deadline) {
        bool all = true;
        for (size_t i = 0; i < eps.size(); ++i) {
            Endpoint& e = *eps[i];
            pfds[i] = pollfd{e.fd, 0, 0};
            if (e.finished()) {
                pfds[i].fd = -1;
                continue;
            }
            all = false;
            if (e.error == 0 && e.sent < e.to_send) {
                pfds[i].events |= POLLOUT;
            }
            if (e.read && !e.eof && e.error == 0) {
                pfds[i].events |= POLLIN;
            }
            if (e.error == 0 && e.sent == e.to_send && e.shut_when_sent && !e.shut) {
                shutdown(e.fd, SHUT_WR);
                e.shut = true;
            }
        }
        if (all) {
            return true;
        }
        int r = poll(pfds.data(), pfds.size(), 100);
        if (r <= 0) {
            continue;
        }
        for (size_t i = 0; i < eps.size(); ++i) {
            Endpoint& e = *eps[i];
            if (pfds[i].fd < 0 || pfds[i].revents == 0) {
                continue;
            }
            if ((pfds[i].revents & POLLOUT) != 0 && e.sent < e.to_send && e.error == 0) {
                if (e.chunk_off == e.chunk.size()) {
                    e.refill();
                }
                ssize_t n = send(e.fd, e.chunk.data() + e.chunk_off, e.chunk.size() - e.chunk_off,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n > 0) {
                    e.send_hash =
                        fnv(e.send_hash, e.chunk.data() + e.chunk_off, static_cast<size_t>(n));
                    e.chunk_off += static_cast<size_t>(n);
                    e.sent += static_cast<uint64_t>(n);
                } else if (n < 0 && errno != EAGAIN) {
                    e.error = errno;
                }
            }
            if ((pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && e.read && !e.eof &&
                e.error == 0) {
                ssize_t n = recv(e.fd, rbuf.data(), rbuf.size(), MSG_DONTWAIT);
                if (n > 0) {
                    e.recv_hash = fnv(e.recv_hash, rbuf.data(), static_cast<size_t>(n));
                    e.received += static_cast<uint64_t>(n);
                } else if (n == 0) {
                    e.eof = true;
                } else if (errno != EAGAIN) {
                    e.error = errno;
                }
            }
        }
    }
    return false;
}

/// Reads until EOF or error (bounded); returns -errno, or bytes read.
inline long drain_until_end(int fd, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    long total = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            return total;
        }
        if (n < 0) {
            if (errno == EAGAIN) {
                continue;
            }
            return -errno;
        }
        total += n;
    }
    return -ETIMEDOUT;
}

inline size_t thread_count() {
    size_t n = 0;
    if (DIR* d = opendir("/proc/self/task")) {
        while (dirent* e = readdir(d)) {
            if (e->d_name[0] != '.') {
                ++n;
            }
        }
        closedir(d);
    }
    return n;
}

}  // namespace sp::io::test
