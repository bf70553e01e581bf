// SPDX-License-Identifier: Apache-2.0
// `sallyport-bench rr`: request/response of --size bytes on P persistent
// connections, like netperf TCP_RR; each response must equal its request.
#include <sys/socket.h>

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

}  // namespace

Result<int> run_rr(const Options& o, const SocketAddress& addr) {
    return run_ops(o, addr, false, rr_thread);
}

}  // namespace sp::bench
