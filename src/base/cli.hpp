// SPDX-License-Identifier: Apache-2.0
// Command line of the two daemons (SPEC section 2). Pure: parses an argv
// into options or a usage error; printing and exiting is main()'s job.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/event.hpp"
#include "base/result.hpp"

namespace sp::cli {

/// What differs between the relay's and the agent's command line.
struct DaemonSpec {
    std::string_view program;         // "sallyport-relay"
    std::string_view summary;         // one line for --help
    std::string_view default_config;  // "/etc/sallyport/relay.toml"
    bool has_gen_key = false;         // relay only
};

struct DaemonOptions {
    std::string config_path;
    bool check_config = false;
    std::optional<log::Level> log_level;
    std::optional<log::Target> log_target;
    bool help = false;
    bool version = false;
    std::optional<std::string> gen_key;  // --gen-key NAME
};

/// Accepts "--flag VALUE", "--flag=VALUE", "-c FILE" and "-cFILE".
/// Returns a Usage error naming the offending argument; positional
/// arguments are errors (the daemons take none).
/// The value of option `flag` at args[i]: `attached` (the part after '=')
/// when there is one, else the next argument, which it consumes (++i). A
/// usage error when there is neither. Shared by every command line we parse.
[[nodiscard]] Result<std::string> take_value(std::span<const char* const> args, size_t& i,
                                             std::string_view flag,
                                             std::optional<std::string_view> attached);

[[nodiscard]] Result<DaemonOptions> parse_daemon_args(const DaemonSpec& spec,
                                                      std::span<const char* const> args);

/// Handles --help and --version: prints to stdout and returns exit code 0;
/// nullopt when neither was given.
[[nodiscard]] std::optional<int> print_info(const DaemonSpec& spec, const DaemonOptions& opt,
                                            std::string_view version);

/// The --help text. Every long flag it names must appear in the man page;
/// tests/man/check-help-flags enforces that.
[[nodiscard]] std::string daemon_help(const DaemonSpec& spec);

}  // namespace sp::cli
