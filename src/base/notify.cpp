// SPDX-License-Identifier: Apache-2.0
#include "base/notify.hpp"

#include <time.h>

#include <atomic>
#include <string>

#include <fmt/format.h>
#include <systemd/sd-daemon.h>

namespace sp::notify {

namespace {
std::atomic<bool> g_muted{false};

void send(const std::string& s) noexcept {
    if (g_muted.load(std::memory_order_relaxed)) {
        return;
    }
    // Failure to notify is not an error of ours: systemd will time us out and
    // say so in its own log, which is where an operator would look.
    (void)sd_notify(0, s.c_str());
}
}  // namespace

void ready() noexcept {
    send("READY=1");
}

void reloading() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
                      static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
    try {
        send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}", usec));
    } catch (...) {
    }
}

void stopping() noexcept {
    send("STOPPING=1");
}

void status(std::string_view text) noexcept {
    try {
        send(fmt::format("STATUS={}", text));
    } catch (...) {
    }
}

void watchdog() noexcept {
    send("WATCHDOG=1");
}

void hand_over_main_pid(int pid) noexcept {
    try {
        send(fmt::format("MAINPID={}", pid));
    } catch (...) {
    }
    g_muted.store(true, std::memory_order_relaxed);
}

std::optional<std::chrono::microseconds> watchdog_interval() noexcept {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) {
        return std::nullopt;
    }
    return std::chrono::microseconds(usec / 2);
}

}  // namespace sp::notify
