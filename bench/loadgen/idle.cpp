// SPDX-License-Identifier: Apache-2.0
// `sallyport-bench idle`: open N sessions one by one, ping each, hold them,
// ping each again, close; bench/run samples the relay's memory meanwhile.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/unique_fd.hpp"
#include "clock.hpp"
#include "json.hpp"
#include "net.hpp"
#include "pattern.hpp"
#include "signals.hpp"
#include "wire.hpp"
#include "workloads.hpp"

namespace sp::bench {
namespace {

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

}  // namespace

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
            if (stop_requested()) {
                return false;
            }
            const int r = connect_target(o, addr, 5000, fds[i]);
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
    while (now_ns() < hold_end && !stop_requested()) {
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

}  // namespace sp::bench
