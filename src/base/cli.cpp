// SPDX-License-Identifier: Apache-2.0
#include "base/cli.hpp"

#include <cstdio>

#include <fmt/format.h>

namespace sp::cli {

Result<std::string> take_value(std::span<const char* const> args, size_t& i, std::string_view flag,
                               std::optional<std::string_view> attached) {
    if (attached) {
        return std::string(*attached);
    }
    if (i + 1 >= args.size()) {
        return usage_error("option {} needs a value", flag);
    }
    ++i;
    return std::string(args[i]);
}

Result<DaemonOptions> parse_daemon_args(const DaemonSpec& spec, std::span<const char* const> args) {
    DaemonOptions opt;
    opt.config_path = std::string(spec.default_config);
    for (size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i];
        std::optional<std::string_view> attached;
        if (arg.starts_with("--")) {
            if (const auto eq = arg.find('='); eq != std::string_view::npos) {
                attached = arg.substr(eq + 1);
                arg = arg.substr(0, eq);
            }
        } else if (arg.starts_with("-c") && arg.size() > 2) {
            attached = arg.substr(2);
            arg = "-c";
        }
        const auto no_value = [&]() -> Result<void> {
            if (attached) {
                return usage_error("option {} takes no value", arg);
            }
            return {};
        };
        if (arg == "-h" || arg == "--help") {
            if (auto r = no_value(); !r) {
                return Unexpected(r.error());
            }
            opt.help = true;
        } else if (arg == "--version") {
            if (auto r = no_value(); !r) {
                return Unexpected(r.error());
            }
            opt.version = true;
        } else if (arg == "--check-config") {
            if (auto r = no_value(); !r) {
                return Unexpected(r.error());
            }
            opt.check_config = true;
        } else if (arg == "-c" || arg == "--config") {
            auto v = take_value(args, i, arg, attached);
            if (!v) {
                return Unexpected(v.error());
            }
            if (v->empty()) {
                return usage_error("option {} needs a file name", arg);
            }
            opt.config_path = std::move(*v);
        } else if (arg == "--log-level") {
            auto v = take_value(args, i, arg, attached);
            if (!v) {
                return Unexpected(v.error());
            }
            opt.log_level = log::parse_level(*v);
            if (!opt.log_level) {
                return usage_error(
                    "invalid --log-level \"{}\" (error, warn, notice, info or debug)", *v);
            }
        } else if (arg == "--log-target") {
            auto v = take_value(args, i, arg, attached);
            if (!v) {
                return Unexpected(v.error());
            }
            opt.log_target = log::parse_target(*v);
            if (!opt.log_target) {
                return usage_error("invalid --log-target \"{}\" (auto, journal or stderr)", *v);
            }
        } else if (spec.has_gen_key && arg == "--gen-key") {
            auto v = take_value(args, i, arg, attached);
            if (!v) {
                return Unexpected(v.error());
            }
            opt.gen_key = std::move(*v);
        } else if (arg.starts_with("-")) {
            return usage_error("unknown option \"{}\" (see {} --help)", arg, spec.program);
        } else {
            return usage_error("unexpected argument \"{}\" (see {} --help)", arg, spec.program);
        }
    }
    return opt;
}

std::optional<int> print_info(const DaemonSpec& spec, const DaemonOptions& opt,
                              std::string_view version) {
    if (opt.help) {
        std::fputs(daemon_help(spec).c_str(), stdout);
        return 0;
    }
    if (opt.version) {
        std::fputs(fmt::format("{} {}\n", spec.program, version).c_str(), stdout);
        return 0;
    }
    return std::nullopt;
}

std::string daemon_help(const DaemonSpec& spec) {
    std::string out = fmt::format(
        "Usage: {} [OPTIONS]\n"
        "{}\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE        configuration file (default {})\n"
        "      --check-config       validate the configuration, print OK or the errors, exit\n"
        "      --log-level LEVEL    error, warn, notice, info (default) or debug\n"
        "      --log-target TARGET  auto (default: journal under systemd), journal or stderr\n",
        spec.program, spec.summary, spec.default_config);
    if (spec.has_gen_key) {
        out += "      --gen-key NAME       print a new shared key line \"NAME SECRET\" and exit\n";
    }
    out +=
        "  -h, --help               show this help and exit\n"
        "      --version            show the version and exit\n"
        "\n"
        "Signals: HUP reloads the configuration; TERM or INT drains sessions and exits.\n"
        "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.\n";
    out += fmt::format("See {}(8) and sallyport.toml(5).\n", spec.program);
    return out;
}

}  // namespace sp::cli
