// SPDX-License-Identifier: Apache-2.0
// I/O sizes and time bounds that the server and the client workloads share.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sp::bench {

inline constexpr size_t kChunk = 256 * size_t{1024};  // stream send size (iperf3 uses 128 KiB)
// Receives are smaller: the buffer and the pattern it is checked against then stay in L2.
inline constexpr size_t kRecvChunk = 128 * size_t{1024};
inline constexpr int64_t kDrainNs = 10'000'000'000;  // after the deadline, to finish and verify

}  // namespace sp::bench
