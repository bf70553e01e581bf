// SPDX-License-Identifier: Apache-2.0
// `sallyport-bench burst`: N new clients arrive at once. Every socket is made
// before a start gate; past it, each client thread calls connect() on all of
// its sockets back to back (non-blocking), then drives them with epoll: banner
// (if expected), header + request, the echoed response, the server's EOF.
// Reports how many were served and the time from each client's connect() to
// the first byte of its answer, as a relay whose data-channel pool is smaller
// than the burst must dial the rest on demand.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/unique_fd.hpp"
#include "client.hpp"
#include "clock.hpp"
#include "histogram.hpp"
#include "json.hpp"
#include "net.hpp"
#include "request.hpp"
#include "signals.hpp"
#include "wire.hpp"
#include "workloads.hpp"

namespace sp::bench {
namespace {

/// One client of the burst, driven by its thread's epoll loop.
struct BurstClient {
    enum class State : uint8_t { Connecting, Banner, Sending, Receiving, Finished };
    UniqueFd fd;
    State state = State::Connecting;
    size_t off = 0;            // banner bytes read, message bytes sent or response bytes received
    bool differs = false;      // a response byte did not match the request
    int64_t t_start = 0;       // connect() called
    int64_t t_first = 0;       // first byte of the response
    size_t index = 0;          // in the whole burst: which request it sends
    std::vector<uint8_t> msg;  // header + request
};

/// What one client thread saw.
struct BurstResult {
    Histogram ttfb;           // connect() to first response byte, served clients only
    uint64_t served = 0;      // whole response, equal to the request, then EOF
    uint64_t failed = 0;      // error, early EOF or not answered by the deadline
    uint64_t mismatched = 0;  // whole response, but not equal to the request
    int64_t connects_ns = 0;  // from the gate until this thread had called every connect()
    int64_t last_ns = 0;      // from the gate until this thread's last client finished
    std::string error;        // the first failure
};

const char* state_name(BurstClient::State s) noexcept {
    switch (s) {
        case BurstClient::State::Connecting:
            return "connecting";
        case BurstClient::State::Banner:
            return "reading the banner";
        case BurstClient::State::Sending:
            return "sending the request";
        case BurstClient::State::Receiving:
            return "reading the response";
        case BurstClient::State::Finished:
            break;
    }
    return "finished";
}

class BurstThread final {
public:
    BurstThread(const Options& o, const RequestSource& src, uint32_t seed, size_t first,
                size_t count, BurstResult& res)
        : o_(o), src_(src), seed_(seed), first_(first), clients_(count), res_(res) {}

    /// Makes the sockets, waits at `gate`, connects them all, then serves
    /// them until each finished or gate.deadline passed.
    void run(const SocketAddress& addr, StartGate& gate);

private:
    void prepare(size_t i);
    void start(const sockaddr_storage& ss, socklen_t len, BurstClient& c);
    void step(BurstClient& c, uint32_t events);
    [[nodiscard]] bool send_request(BurstClient& c);
    void want(BurstClient& c, uint32_t events);
    void finish(BurstClient& c, int neg_errno, const char* what);

    const Options& o_;
    const RequestSource& src_;
    uint32_t seed_;
    size_t first_;  // index of clients_[0] in the whole burst
    std::vector<BurstClient> clients_;
    BurstResult& res_;
    UniqueFd epoll_;
    size_t pending_ = 0;
    int64_t t0_ = 0;
    std::vector<uint8_t> scratch_;
};

void BurstThread::prepare(size_t i) {
    BurstClient& c = clients_[i];
    c.index = first_ + i;
    Header h;
    h.op = static_cast<uint8_t>(Op::Echo);
    h.seed = seed_;
    h.length = o_.size;
    c.msg.resize(sizeof h + o_.size);
    std::memcpy(c.msg.data(), &h, sizeof h);
    std::memcpy(c.msg.data() + sizeof h, src_.request(c.index), o_.size);
}

void BurstThread::finish(BurstClient& c, int neg_errno, const char* what) {
    if (neg_errno == 0 && !c.differs) {
        ++res_.served;
        res_.ttfb.record(static_cast<uint64_t>(c.t_first - c.t_start));
    } else if (neg_errno == 0) {
        ++res_.mismatched;
    } else {
        ++res_.failed;
        if (res_.error.empty()) {
            res_.error =
                fmt::format("client {}: {} while {}", c.index,
                            what != nullptr ? what : err_text(neg_errno), state_name(c.state));
        }
    }
    c.state = BurstClient::State::Finished;
    c.fd = UniqueFd();  // closing it also takes it out of the epoll set
    c.msg = {};
    --pending_;
    if (t0_ != 0) {  // not a socket() failure before the start
        res_.last_ns = std::max(res_.last_ns, now_ns() - t0_);
    }
}

void BurstThread::want(BurstClient& c, uint32_t events) {
    epoll_event ev{events, {.ptr = &c}};
    (void)epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);  // fd is registered
}

void BurstThread::start(const sockaddr_storage& ss, socklen_t len, BurstClient& c) {
    if (c.state == BurstClient::State::Finished) {
        return;  // socket() failed before the start: already counted
    }
    c.t_start = now_ns();
    const bool now = connect(c.fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) == 0;
    if (!now && errno != EINPROGRESS) {
        finish(c, -errno, nullptr);
        return;
    }
    epoll_event ev{EPOLLOUT, {.ptr = &c}};
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev) < 0) {
        finish(c, -errno, nullptr);
    }
}

bool BurstThread::send_request(BurstClient& c) {
    while (c.off < c.msg.size()) {
        const ssize_t r =
            send(c.fd.get(), c.msg.data() + c.off, c.msg.size() - c.off, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                want(c, EPOLLOUT);
                return true;
            }
            finish(c, -errno, nullptr);
            return false;
        }
        c.off += static_cast<size_t>(r);
    }
    c.state = BurstClient::State::Receiving;
    c.off = 0;
    want(c, EPOLLIN);
    return true;
}

void BurstThread::step(BurstClient& c, uint32_t events) {
    switch (c.state) {
        case BurstClient::State::Connecting: {
            int err = 0;
            socklen_t el = sizeof err;
            if (getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &el) < 0) {
                err = errno;
            }
            if (err != 0) {
                finish(c, -err, nullptr);
                return;
            }
            if ((events & EPOLLOUT) == 0) {  // only EPOLLOUT was asked for: a hang-up
                finish(c, -ECONNRESET, nullptr);
                return;
            }
            c.off = 0;
            if (o_.expect_banner) {
                c.state = BurstClient::State::Banner;
                want(c, EPOLLIN);
                return;
            }
            c.state = BurstClient::State::Sending;
            (void)send_request(c);  // on failure it finished the client
            return;
        }
        case BurstClient::State::Banner: {
            char b[kBanner.size()];
            const ssize_t r = recv(c.fd.get(), b, kBanner.size() - c.off, 0);
            if (r == 0) {
                finish(c, -ECONNRESET, "EOF");
                return;
            }
            if (r < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                    finish(c, -errno, nullptr);
                }
                return;
            }
            if (std::string_view(b, static_cast<size_t>(r)) !=
                kBanner.substr(c.off, static_cast<size_t>(r))) {
                finish(c, -EPROTO, "a wrong banner");
                return;
            }
            c.off += static_cast<size_t>(r);
            if (c.off == kBanner.size()) {
                c.state = BurstClient::State::Sending;
                c.off = 0;
                (void)send_request(c);
            }
            return;
        }
        case BurstClient::State::Sending:
            (void)send_request(c);
            return;
        case BurstClient::State::Receiving: {
            // One byte more than the response: the server must close after it.
            const ssize_t r = recv(c.fd.get(), scratch_.data(), o_.size + 1 - c.off, 0);
            if (r == 0) {
                if (c.off == o_.size) {
                    finish(c, 0, nullptr);
                } else {
                    finish(c, -EPROTO, c.off == 0 ? "EOF before any answer" : "a short answer");
                }
                return;
            }
            if (r < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                    finish(c, -errno, nullptr);
                }
                return;
            }
            if (c.t_first == 0) {
                c.t_first = now_ns();
            }
            const auto n = static_cast<size_t>(r);
            if (c.off + n > o_.size) {
                finish(c, -EPROTO, "bytes past the answer");
                return;
            }
            const uint8_t* want = src_.request(c.index) + c.off;
            c.differs = c.differs || std::memcmp(scratch_.data(), want, n) != 0;
            c.off += n;
            return;
        }
        case BurstClient::State::Finished:
            return;
    }
}

void BurstThread::run(const SocketAddress& addr, StartGate& gate) {
    epoll_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
    scratch_.resize(o_.size + 1);
    pending_ = clients_.size();
    for (size_t i = 0; i < clients_.size(); ++i) {
        prepare(i);
        clients_[i].fd =
            UniqueFd(socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!clients_[i].fd || !epoll_) {
            finish(clients_[i], -errno, nullptr);
        } else {
            set_nodelay(clients_[i].fd.get());
        }
    }
    sockaddr_storage ss{};
    const socklen_t len = addr.to_sockaddr(ss);
    gate.ready.count_down();
    gate.go.wait();
    t0_ = gate.t0;
    for (BurstClient& c : clients_) {
        start(ss, len, c);
    }
    res_.connects_ns = now_ns() - t0_;
    std::vector<epoll_event> evs(256);
    while (pending_ > 0) {
        const int64_t left = gate.deadline - now_ns();
        if (left <= 0 || stop_requested()) {
            for (BurstClient& c : clients_) {
                if (c.state != BurstClient::State::Finished) {
                    finish(c, -ETIMEDOUT, stop_requested() ? "interrupted" : "no answer in time");
                }
            }
            break;
        }
        const int ms = static_cast<int>(std::min<int64_t>(left / 1'000'000 + 1, 200));
        const int n = epoll_wait(epoll_.get(), evs.data(), static_cast<int>(evs.size()), ms);
        for (int i = 0; i < n; ++i) {
            const epoll_event& ev = evs[static_cast<size_t>(i)];
            step(*static_cast<BurstClient*>(ev.data.ptr), ev.events);
        }
    }
}

}  // namespace

Result<int> run_burst(const Options& o, const SocketAddress& addr) {
    const auto n = static_cast<size_t>(o.count);
    const size_t threads = std::min(static_cast<size_t>(o.parallel), std::max<size_t>(n, 1));
    const RequestSource src(o.seed, o.size);
    StartGate gate(static_cast<int>(threads));
    std::vector<BurstResult> res(threads);
    std::vector<BurstThread> workers;
    workers.reserve(threads);
    for (size_t t = 0; t < threads; ++t) {
        const size_t first = n * t / threads;
        const size_t last = n * (t + 1) / threads;
        workers.emplace_back(o, src, o.seed, first, last - first, res[t]);
    }
    std::vector<std::thread> ts;
    ts.reserve(threads);
    for (BurstThread& w : workers) {
        ts.emplace_back([&w, &addr, &gate] { w.run(addr, gate); });
    }
    gate.ready.wait();
    gate.t0 = now_ns();
    gate.deadline = gate.t0 + static_cast<int64_t>(o.seconds * 1e9);
    gate.go.count_down();
    for (auto& t : ts) {
        t.join();
    }
    Histogram all;
    uint64_t served = 0;
    uint64_t failed = 0;
    uint64_t mismatched = 0;
    int64_t connects_ns = 0;
    int64_t last_ns = 0;
    std::string error;
    for (const BurstResult& r : res) {
        all.merge(r.ttfb);
        served += r.served;
        failed += r.failed;
        mismatched += r.mismatched;
        connects_ns = std::max(connects_ns, r.connects_ns);
        last_ns = std::max(last_ns, r.last_ns);
        if (error.empty()) {
            error = r.error;
        }
    }
    const bool ok = n > 0 && served == n;
    if (o.json) {
        fmt::print(
            "{{\"mode\":\"burst\",\"clients\":{},\"threads\":{},\"size\":{},\"served\":{},"
            "\"failed\":{},\"mismatched\":{},\"connects_ms\":{:.3f},\"all_done_ms\":{:.3f},"
            "\"ok\":{},\"error\":{},{}}}\n",
            n, threads, o.size, served, failed, mismatched, static_cast<double>(connects_ns) / 1e6,
            static_cast<double>(last_ns) / 1e6, ok, json_str(error), hist_json(all));
    } else {
        fmt::print(
            "burst of {} (size {}, {} thread{}): {} served, {} failed, {} mismatched; first byte "
            "p50 {:.1f} us  p90 {:.1f}  p99 {:.1f}  max {:.1f}; connects issued in {:.1f} ms, "
            "all done in {:.1f} ms {}{}\n",
            n, o.size, threads, threads == 1 ? "" : "s", served, failed, mismatched,
            static_cast<double>(all.quantile(0.5)) / 1e3,
            static_cast<double>(all.quantile(0.9)) / 1e3,
            static_cast<double>(all.quantile(0.99)) / 1e3, static_cast<double>(all.max()) / 1e3,
            static_cast<double>(connects_ns) / 1e6, static_cast<double>(last_ns) / 1e6,
            ok ? "ok" : "FAILED ", error);
    }
    return ok ? 0 : 1;
}

}  // namespace sp::bench
