// SPDX-License-Identifier: Apache-2.0
// SIGINT/SIGTERM ask every sallyport-bench loop to wind down; SIGPIPE is ignored
// so a peer's reset shows up as EPIPE on the call that met it.
#pragma once

namespace sp::bench {

/// Installs the handlers. Call once from main() before starting threads.
void install_signal_handlers() noexcept;

/// True once SIGINT or SIGTERM arrived. Any thread; never blocks.
[[nodiscard]] bool stop_requested() noexcept;

}  // namespace sp::bench
