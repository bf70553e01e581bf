// SPDX-License-Identifier: Apache-2.0
// One entry point per sallyport-bench command; main() picks one. Each prints
// its result (JSON with --json) on stdout and returns the exit code: 0 when
// every byte was verified and the workload's own pass rule held, else 1.
#pragma once

#include "base/addr.hpp"
#include "base/result.hpp"
#include "options.hpp"

namespace sp::bench {

/// serve (server.cpp): the sink/source/echo server every client talks to.
[[nodiscard]] Result<int> run_serve(const Options& o);
/// stream (stream.cpp): N bulk streams up, down or both.
[[nodiscard]] Result<int> run_stream(const Options& o, const SocketAddress& addr);
/// rr (rr.cpp): request/response on persistent connections.
[[nodiscard]] Result<int> run_rr(const Options& o, const SocketAddress& addr);
/// crr (crr.cpp): connect, request, response, close, repeated.
[[nodiscard]] Result<int> run_crr(const Options& o, const SocketAddress& addr);
/// idle (idle.cpp): hold N sessions, ping each before and after.
[[nodiscard]] Result<int> run_idle(const Options& o, const SocketAddress& addr);
/// burst (burst.cpp): N new clients connect at once, each one request and answer.
[[nodiscard]] Result<int> run_burst(const Options& o, const SocketAddress& addr);

}  // namespace sp::bench
