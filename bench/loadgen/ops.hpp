// SPDX-License-Identifier: Apache-2.0
// The driver rr and crr share: P client threads behind one start gate, each
// counting operations and latencies, merged into one result line.
#pragma once

#include <cstdint>
#include <string>

#include "base/addr.hpp"
#include "base/result.hpp"
#include "client.hpp"
#include "histogram.hpp"
#include "options.hpp"

namespace sp::bench {

/// What one client thread of rr or crr measured.
struct RrResult {
    Histogram hist;
    uint64_t ops = 0;
    uint64_t failed = 0;      // crr: connections that did not complete
    uint64_t mismatched = 0;  // responses that differed from the request
    std::string error;
};

/// One client thread: opens what it needs, waits at `gate`, then runs
/// operations until gate.deadline, counting into `live` and `res`.
using OpsThreadFn = void (*)(const Options& o, const SocketAddress& addr, uint32_t seed,
                             StartGate& gate, Live& live, RrResult& res);

/// Runs o.parallel `thread_fn` threads for o.seconds and prints the merged
/// result as mode "rr" or "crr" (`crr` also selects its failure tolerance).
[[nodiscard]] Result<int> run_ops(const Options& o, const SocketAddress& addr, bool crr,
                                  OpsThreadFn thread_fn);

}  // namespace sp::bench
