// SPDX-License-Identifier: Apache-2.0
#include "base/event.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <vector>

#include <fmt/format.h>
#include <systemd/sd-journal.h>

namespace sp::log {

namespace {

std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::atomic<bool> g_journal{false};
// Written once by configure() before threads start; read-only afterwards.
std::string g_identifier = "sallyport";

bool needs_quotes(std::string_view v) {
    if (v.empty()) {
        return true;
    }
    for (const unsigned char c : v) {
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
            return true;
        }
    }
    return false;
}

void append_value(std::string& out, std::string_view v) {
    if (!needs_quotes(v)) {
        out += v;
        return;
    }
    out += '"';
    for (const unsigned char c : v) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < ' ' || c == 0x7f) {
                    out += fmt::format("\\x{:02x}", c);
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
}

// The message is free text but must stay on one line too.
void append_message(std::string& out, std::string_view m) {
    for (const unsigned char c : m) {
        if (c == '\n') {
            out += "\\n";
        } else if (c < ' ' && c != '\t') {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out += static_cast<char>(c);
        }
    }
}

void write_all(int fd, std::string_view s) noexcept {
    while (!s.empty()) {
        const ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;  // nowhere left to report a logging failure
        }
        s.remove_prefix(static_cast<size_t>(n));
    }
}

void send_journal(Level level, std::string_view name, std::initializer_list<Field> fields,
                  std::string_view message) {
    std::vector<std::string> items;
    items.reserve(fields.size() + 4);
    items.push_back(fmt::format("MESSAGE={}", message));
    items.push_back(fmt::format("PRIORITY={}", static_cast<int>(level)));
    items.push_back(fmt::format("SYSLOG_IDENTIFIER={}", g_identifier));
    items.push_back(fmt::format("SALLYPORT_EVENT={}", name));
    for (const auto& f : fields) {
        if (!f.value.empty()) {
            items.push_back(fmt::format("{}={}", f.name, f.value));
        }
    }
    std::vector<iovec> iov(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
        iov[i].iov_base = items[i].data();
        iov[i].iov_len = items[i].size();
    }
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) < 0) {
        // journald gone (restart, shutdown): do not lose the event.
        write_all(STDERR_FILENO,
                  format_line(std::chrono::system_clock::now(), level, name, fields, message));
    }
}

}  // namespace

std::optional<Level> parse_level(std::string_view s) noexcept {
    if (s == "error") {
        return Level::Error;
    }
    if (s == "warn" || s == "warning") {
        return Level::Warn;
    }
    if (s == "notice") {
        return Level::Notice;
    }
    if (s == "info") {
        return Level::Info;
    }
    if (s == "debug") {
        return Level::Debug;
    }
    return std::nullopt;
}

std::optional<Target> parse_target(std::string_view s) noexcept {
    if (s == "auto") {
        return Target::Auto;
    }
    if (s == "journal") {
        return Target::Journal;
    }
    if (s == "stderr") {
        return Target::Stderr;
    }
    return std::nullopt;
}

std::string_view level_name(Level l) noexcept {
    switch (l) {
        case Level::Error:
            return "error";
        case Level::Warn:
            return "warn";
        case Level::Notice:
            return "notice";
        case Level::Info:
            return "info";
        case Level::Debug:
            return "debug";
    }
    return "info";
}

Target resolve_target(Target t) noexcept {
    if (t != Target::Auto) {
        return t;
    }
    const char* js = std::getenv("JOURNAL_STREAM");
    const char* inv = std::getenv("INVOCATION_ID");
    return ((js != nullptr && *js != '\0') || (inv != nullptr && *inv != '\0')) ? Target::Journal
                                                                                : Target::Stderr;
}

void configure(std::string_view identifier, Target target, Level level) noexcept {
    g_identifier = std::string(identifier);
    g_journal.store(resolve_target(target) == Target::Journal);
    set_level(level);
}

void set_level(Level level) noexcept {
    g_level.store(static_cast<int>(level));
}

bool enabled(Level level) noexcept {
    return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed);
}

std::string format_line(std::chrono::system_clock::time_point when, Level level,
                        std::string_view name, std::initializer_list<Field> fields,
                        std::string_view message) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {}",
                                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                  tm.tm_min, tm.tm_sec, ms % 1000, level_name(level), name);
    for (const auto& f : fields) {
        if (f.value.empty()) {
            continue;
        }
        out += ' ';
        out += f.name;
        out += '=';
        append_value(out, f.value);
    }
    if (!message.empty()) {
        out += ' ';
        append_message(out, message);
    }
    out += '\n';
    return out;
}

void event(Level level, std::string_view name, std::initializer_list<Field> fields,
           std::string_view message) noexcept {
    if (!enabled(level)) {
        return;
    }
    try {
        if (g_journal.load(std::memory_order_relaxed)) {
            send_journal(level, name, fields, message);
        } else {
            // One write(2) per line keeps lines from different threads whole.
            write_all(STDERR_FILENO,
                      format_line(std::chrono::system_clock::now(), level, name, fields, message));
        }
    } catch (...) {
        // Out of memory while formatting: dropping one event beats dying.
    }
}

}  // namespace sp::log
