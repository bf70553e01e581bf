// SPDX-License-Identifier: Apache-2.0
// `sallyport-bench crr`: connect, send a request, read the response, the
// server closes, repeat, like netperf TCP_CRR; latency is connect() to the
// first response byte.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/unique_fd.hpp"
#include "clock.hpp"
#include "net.hpp"
#include "ops.hpp"
#include "request.hpp"
#include "tuning.hpp"
#include "wire.hpp"
#include "workloads.hpp"

namespace sp::bench {
namespace {

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
        int r = connect_target(o, addr, 5000, fd);
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

}  // namespace

Result<int> run_crr(const Options& o, const SocketAddress& addr) {
    return run_ops(o, addr, true, crr_thread);
}

}  // namespace sp::bench
