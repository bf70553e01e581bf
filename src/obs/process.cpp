// SPDX-License-Identifier: Apache-2.0
#include "obs/process.hpp"

namespace sp::obs {

void add_process_metrics(MetricSet& set, const ProcessInfo& info) {
    set.set(kBuildInfo, {info.program, info.version}, 1);
    const auto since_epoch = std::chrono::duration<double>(info.started.time_since_epoch()).count();
    set.set(kStartTime, {}, since_epoch);
    set.set(kWorkers, {}, info.workers);
    set.set(kDraining, {}, info.draining ? 1 : 0);
}

}  // namespace sp::obs
