// SPDX-License-Identifier: Apache-2.0
// The one way sallyport tells the operator anything: structured events
// (SPEC section 5), written to the systemd journal with SALLYPORT_EVENT= and
// typed fields, or to stderr as one line. Safe to call from any thread.
#pragma once

#include <chrono>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace sp::log {

/// Values are syslog priorities, as the journal's PRIORITY= field wants.
/// Notice: normal but worth an admin's eye (refusals of strangers, agents
/// coming and going), shown by `journalctl -p notice`, not by `-p warning`.
enum class Level : int { Error = 3, Warn = 4, Notice = 5, Info = 6, Debug = 7 };

enum class Target { Auto, Journal, Stderr };

/// One journal field; `name` is the journal spelling (upper case, e.g.
/// "CLIENT_ADDR"). Fields with an empty value are left out.
struct Field {
    std::string_view name;
    std::string value;
};

[[nodiscard]] std::optional<Level> parse_level(std::string_view s) noexcept;
[[nodiscard]] std::optional<Target> parse_target(std::string_view s) noexcept;
[[nodiscard]] std::string_view level_name(Level l) noexcept;

/// Auto becomes Journal when systemd started us (JOURNAL_STREAM or
/// INVOCATION_ID is set, as sd_journal_stream_fd(3) describes), else Stderr.
[[nodiscard]] Target resolve_target(Target t) noexcept;

/// Call once from main() before any thread starts. `identifier` becomes
/// SYSLOG_IDENTIFIER. Until then events go to stderr at Info.
void configure(std::string_view identifier, Target target, Level level) noexcept;

/// Changes the threshold at run time (SIGHUP reload); thread-safe.
void set_level(Level level) noexcept;
[[nodiscard]] bool enabled(Level level) noexcept;

/// Emits one event. Never throws, never blocks on anything but the write.
void event(Level level, std::string_view name, std::initializer_list<Field> fields,
           std::string_view message) noexcept;

/// The stderr form, exposed for tests: "TIME LEVEL EVENT K=V ... MESSAGE".
/// Values with spaces, quotes, '=' or control bytes are double-quoted with
/// backslash escapes, so one event is always exactly one line.
[[nodiscard]] std::string format_line(std::chrono::system_clock::time_point when, Level level,
                                      std::string_view name, std::initializer_list<Field> fields,
                                      std::string_view message);

}  // namespace sp::log
