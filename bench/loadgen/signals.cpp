// SPDX-License-Identifier: Apache-2.0
#include "signals.hpp"

#include <signal.h>

#include <atomic>

namespace sp::bench {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int /*sig*/) {
    g_stop.store(true, std::memory_order_relaxed);
}

}  // namespace

void install_signal_handlers() noexcept {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

bool stop_requested() noexcept {
    return g_stop.load(std::memory_order_relaxed);
}

}  // namespace sp::bench
