// SPDX-License-Identifier: Apache-2.0
// `sallyport-bench stream`: N bulk TCP streams up, down or both for S seconds;
// the rate counts bytes moved before the deadline, every byte is verified.
#include <sys/socket.h>

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
#include "json.hpp"
#include "net.hpp"
#include "pattern.hpp"
#include "tuning.hpp"
#include "wire.hpp"
#include "workloads.hpp"

namespace sp::bench {
namespace {

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

}  // namespace

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

}  // namespace sp::bench
