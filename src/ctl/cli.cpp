// SPDX-License-Identifier: Apache-2.0
#include "ctl/cli.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "base/addr.hpp"
#include "base/cli.hpp"

namespace sp::ctl {

namespace {

struct CommandSpec {
    std::string_view name;
    std::string_view usage;  // operands and options, for --help
    std::string_view what;
};

// The daemons answer these; which ones a daemon knows depends on its role
// (relay or agent), and it says so when asked for one it does not.
constexpr std::array<CommandSpec, 12> kCommands = {{
    {"status", "", "what the daemon is and does"},
    {"agents", "", "relay: the connected agents"},
    {"listeners", "", "relay: the public listeners"},
    {"sessions", "[--service S] [--client CIDR]", "the established sessions"},
    {"close", "SESSION_ID", "relay: end one session"},
    {"drain", "", "accept no new sessions; established ones go on"},
    {"resume", "", "undo drain"},
    {"reload", "", "re-read the configuration (as SIGHUP)"},
    {"relays", "", "agent: its relays"},
    {"services", "", "agent: its services and backends"},
    {"metrics", "", "the Prometheus metrics"},
    {"help", "", "the commands the daemon answers"},
}};

constexpr auto kNames = [] {
    std::array<std::string_view, kCommands.size()> names{};
    for (size_t i = 0; i < kCommands.size(); ++i) {
        names[i] = kCommands[i].name;
    }
    return names;
}();

const CommandSpec* find_command(std::string_view name) {
    for (const auto& c : kCommands) {
        if (c.name == name) {
            return &c;
        }
    }
    return nullptr;
}

}  // namespace

std::span<const std::string_view> command_names() noexcept {
    return kNames;
}

std::string help_text() {
    std::string out =
        "Usage: sallyportctl [-s SOCKET] [--json] [-t SECONDS] COMMAND [ARGS]\n"
        "Query and steer a running sallyport-relay or sallyport-agent through its status "
        "socket.\n\n"
        "Options:\n"
        "  -s, --socket SOCKET   the daemon's status socket (default: /run/sallyport/relay.sock\n"
        "                        if it exists, else /run/sallyport/agent.sock)\n"
        "      --json            print the daemon's JSON document instead of columns\n"
        "  -t, --timeout SECONDS give up after this long (default 10)\n"
        "  -h, --help            print this help and exit\n"
        "      --version         print the version and exit\n\n"
        "Commands:\n";
    for (const auto& c : kCommands) {
        const std::string left =
            c.usage.empty() ? std::string(c.name) : fmt::format("{} {}", c.name, c.usage);
        out += fmt::format("  {:<40} {}\n", left, c.what);
    }
    out +=
        "\nExit status: 0 success, 1 the daemon could not be reached or failed the command,\n"
        "2 usage error or a configuration the daemon refused to reload.\n";
    return out;
}

Result<Options> parse_args(std::span<const char* const> args) {
    Options opt;
    std::optional<std::string> service;
    std::optional<std::string> client;
    std::vector<std::string> operands;
    const CommandSpec* cmd = nullptr;
    for (size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i];
        std::optional<std::string_view> attached;
        if (arg.starts_with("--")) {
            if (const auto eq = arg.find('='); eq != std::string_view::npos) {
                attached = arg.substr(eq + 1);
                arg = arg.substr(0, eq);
            }
        } else if ((arg.starts_with("-s") || arg.starts_with("-t")) && arg.size() > 2) {
            attached = arg.substr(2);
            arg = arg.substr(0, 2);
        }
        const bool flag = arg.size() > 1 && arg[0] == '-';
        if (flag && !attached && (arg == "-h" || arg == "--help")) {
            opt.help = true;
        } else if (flag && !attached && arg == "--version") {
            opt.version = true;
        } else if (flag && !attached && arg == "--json") {
            opt.json = true;
        } else if (arg == "-s" || arg == "--socket") {
            auto v = cli::take_value(args, i, arg, attached);
            if (!v) {
                return Unexpected(v.error());
            }
            if (v->empty()) {
                return usage_error("option {} needs a socket path", arg);
            }
            opt.socket = std::move(*v);
        } else if (arg == "-t" || arg == "--timeout") {
            auto v = cli::take_value(args, i, arg, attached);
            if (!v) {
                return Unexpected(v.error());
            }
            const std::string text = std::move(*v);
            unsigned secs = 0;
            const char* end = text.data() + text.size();
            const auto [p, ec] = std::from_chars(text.data(), end, secs);
            if (ec != std::errc() || p != end || secs == 0 || secs > 3600) {
                return usage_error("invalid {} \"{}\" (1 to 3600 seconds)", arg, text);
            }
            opt.timeout = std::chrono::seconds(secs);
        } else if (cmd != nullptr && cmd->name == "sessions" &&
                   (arg == "--service" || arg == "--client")) {
            auto v = cli::take_value(args, i, arg, attached);
            if (!v) {
                return Unexpected(v.error());
            }
            if (arg == "--client") {
                if (auto c = Cidr::parse(*v); !c) {
                    return usage_error("invalid --client \"{}\": {}", *v, c.error().message);
                }
                client = std::move(*v);
            } else {
                if (v->empty()) {
                    return usage_error("option --service needs a service name");
                }
                service = std::move(*v);
            }
        } else if (flag && arg != "-") {
            return usage_error("unknown option {}{}", arg,
                               cmd == nullptr ? "" : fmt::format(" for {}", cmd->name));
        } else if (cmd == nullptr) {
            cmd = find_command(arg);
            if (cmd == nullptr) {
                return usage_error("unknown command \"{}\" (see sallyportctl --help)", arg);
            }
        } else {
            operands.emplace_back(arg);
        }
    }
    if (opt.help || opt.version) {
        return opt;
    }
    if (cmd == nullptr) {
        return usage_error("no command given (see sallyportctl --help)");
    }
    const size_t want = cmd->name == "close" ? 1 : 0;
    if (operands.size() != want) {
        if (want == 1) {
            return usage_error("close needs exactly one SESSION_ID");
        }
        return usage_error("{} takes no operand (\"{}\")", cmd->name, operands.front());
    }
    opt.request.cmd = std::string(cmd->name);
    if (cmd->name == "close") {
        opt.request.args["id"] = operands.front();
    }
    if (service) {
        opt.request.args["service"] = *service;
    }
    if (client) {
        opt.request.args["client"] = *client;
    }
    return opt;
}

}  // namespace sp::ctl
