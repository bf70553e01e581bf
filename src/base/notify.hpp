// SPDX-License-Identifier: Apache-2.0
// systemd service notification (Type=notify): READY, RELOADING, STOPPING,
// STATUS and the watchdog. Every call is a no-op when NOTIFY_SOCKET is unset,
// so the daemons behave the same outside systemd.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace sp::notify {

void ready() noexcept;
/// RELOADING=1 with MONOTONIC_USEC, as systemd >= 253 expects; older
/// versions ignore the extra field.
void reloading() noexcept;
void stopping() noexcept;
void status(std::string_view text) noexcept;
void watchdog() noexcept;

/// Binary upgrade: MAINPID=`pid` (the successor becomes the unit's main
/// process), then nothing more from this process: after it, STOPPING=1 or
/// WATCHDOG=1 from the old process would speak for the new one.
void hand_over_main_pid(int pid) noexcept;

/// Half the WatchdogSec interval when systemd asked us to ping, else nullopt.
[[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval() noexcept;

}  // namespace sp::notify
