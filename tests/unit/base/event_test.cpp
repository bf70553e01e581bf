// SPDX-License-Identifier: Apache-2.0
#include "base/event.hpp"

#include <cstdlib>
#include <string>

#include <doctest/doctest.h>

using namespace sp::log;

TEST_SUITE("base.event") {
    TEST_CASE("event: stderr line carries time, level, name, fields and message") {
        const auto when = std::chrono::system_clock::time_point(std::chrono::milliseconds(1234));
        const std::string line =
            format_line(when, Level::Info, "session-close",
                        {{"SESSION_ID", "42"}, {"CLIENT_ADDR", "203.0.113.9:5000"}, {"EMPTY", ""}},
                        "session closed");
        CHECK(line ==
              "1970-01-01T00:00:01.234Z info session-close SESSION_ID=42 "
              "CLIENT_ADDR=203.0.113.9:5000 session closed\n");
    }

    TEST_CASE("event: hostile values stay on one line and are quoted") {
        const auto line = format_line({}, Level::Warn, "client-rejected",
                                      {{"REASON", "a b\n\"c\"=d\\"}}, "two\nlines");
        CHECK(line.find('\n') == line.size() - 1);
        CHECK(line.find(R"(REASON="a b\n\"c\"=d\\")") != std::string::npos);
        CHECK(line.find("two\\nlines") != std::string::npos);
    }

    TEST_CASE("event: levels and targets parse from their CLI spellings") {
        CHECK(parse_level("debug") == Level::Debug);
        CHECK(parse_level("warn") == Level::Warn);
        CHECK(parse_level("notice") == Level::Notice);
        CHECK(level_name(Level::Notice) == "notice");
        CHECK_FALSE(parse_level("verbose"));
        CHECK(parse_target("journal") == Target::Journal);
        CHECK_FALSE(parse_target("syslog"));
        CHECK(resolve_target(Target::Stderr) == Target::Stderr);
    }

    TEST_CASE("event: auto target follows systemd's environment") {
        ::unsetenv("JOURNAL_STREAM");
        ::unsetenv("INVOCATION_ID");
        CHECK(resolve_target(Target::Auto) == Target::Stderr);
        ::setenv("INVOCATION_ID", "abc", 1);
        CHECK(resolve_target(Target::Auto) == Target::Journal);
        ::unsetenv("INVOCATION_ID");
        ::setenv("JOURNAL_STREAM", "8:1234", 1);
        CHECK(resolve_target(Target::Auto) == Target::Journal);
        ::unsetenv("JOURNAL_STREAM");
    }

    TEST_CASE("event: threshold filters lower priorities") {
        set_level(Level::Warn);
        CHECK(enabled(Level::Error));
        CHECK(enabled(Level::Warn));
        CHECK_FALSE(enabled(Level::Info));
        set_level(Level::Info);
    }
}
