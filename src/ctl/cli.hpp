// SPDX-License-Identifier: Apache-2.0
// sallyportctl's command line: which socket, which output, which command
// with which arguments. Pure: argv in, a request or a usage error out.
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "admin/protocol.hpp"
#include "base/result.hpp"

namespace sp::ctl {

/// Where sallyportctl looks without -s: the relay's socket if it exists,
/// else the agent's.
inline constexpr std::string_view kRelaySocket = "/run/sallyport/relay.sock";
inline constexpr std::string_view kAgentSocket = "/run/sallyport/agent.sock";

struct Options {
    std::string socket;  // "" = the default above
    bool json = false;
    std::chrono::milliseconds timeout{10000};
    bool help = false;
    bool version = false;
    admin::Request request;  // cmd empty only with help or version
};

/// Parses argv (without argv[0]). Global options (-s/--socket, --json,
/// -t/--timeout, -h/--help, --version) may come before or after the
/// command; a command's own options and operands after it. Returns a Usage
/// error naming the offending argument for an unknown command or option, a
/// missing or extra operand, or a malformed value (a CIDR for --client).
[[nodiscard]] Result<Options> parse_args(std::span<const char* const> args);

/// The --help text. Every long option it names is in sallyportctl(8)
/// (tests/man/check-help-flags).
[[nodiscard]] std::string help_text();

/// The commands sallyportctl knows, in the order --help lists them.
[[nodiscard]] std::span<const std::string_view> command_names() noexcept;

}  // namespace sp::ctl
