// SPDX-License-Identifier: Apache-2.0
#include "ops.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "clock.hpp"
#include "json.hpp"

namespace sp::bench {

Result<int> run_ops(const Options& o, const SocketAddress& addr, bool crr, OpsThreadFn thread_fn) {
    const auto n = static_cast<size_t>(o.parallel);
    StartGate gate(static_cast<int>(n));
    std::vector<Live> live(n);
    std::vector<RrResult> res(n);
    std::vector<std::thread> ts;
    for (size_t i = 0; i < n; ++i) {
        ts.emplace_back(thread_fn, std::cref(o), std::cref(addr),
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

}  // namespace sp::bench
