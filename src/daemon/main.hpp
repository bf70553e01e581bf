// SPDX-License-Identifier: Apache-2.0
// The one main() of both daemons: command line, --help/--version, --gen-key,
// logging set-up, --check-config, the fd limit, then the App. It is the only
// place that turns an error into an exit code (SPEC section 2: 0 ok,
// 1 runtime, 2 usage or configuration).
#pragma once

#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/cli.hpp"
#include "base/result.hpp"
#include "daemon/upgrade.hpp"

namespace sp::daemon {

/// What differs between the relay's and the agent's main(). `App` must have
/// `int run()`; `create` sets up everything that can fail at start.
template <class Config, class App>
struct Program {
    cli::DaemonSpec spec;
    Result<Config> (*load)(const std::string& path);
    /// --check-config: every error of the file and of the key or
    /// certificate files it names, as a start would read them; empty = OK.
    std::vector<Error> (*check)(const std::string& path);
    Result<std::unique_ptr<App>> (*create)(Config cfg);
};

namespace detail {

/// Prints `e` on stderr as "PROGRAM: message" and returns its exit code.
int fail(const cli::DaemonSpec& spec, const Error& e);

/// Everything before the configuration is read. Returns an exit code when
/// the run ends here (--help, --version, --gen-key, a usage error), else
/// nullopt with `ret_opt` filled and logging configured.
std::optional<int> prologue(const cli::DaemonSpec& spec, int argc, char** argv,
                            cli::DaemonOptions& ret_opt);

/// Raises RLIMIT_NOFILE to its hard limit.
[[nodiscard]] Result<void> raise_limits();

}  // namespace detail

template <class Config, class App>
int run_main(const Program<Config, App>& p, int argc, char** argv) {
    // Before anything can replace the file: SIGUSR2 starts this path.
    record_command_line(argc, argv);
    cli::DaemonOptions opt;
    if (const auto code = detail::prologue(p.spec, argc, argv, opt)) {
        return *code;
    }
    if (opt.check_config) {
        const auto errors = p.check(opt.config_path);
        for (const auto& e : errors) {
            (void)detail::fail(p.spec, e);
        }
        if (errors.empty()) {
            std::puts("OK");
        }
        return errors.empty() ? 0 : 2;
    }
    auto cfg = p.load(opt.config_path);
    if (!cfg) {
        return detail::fail(p.spec, cfg.error());
    }
    if (auto r = detail::raise_limits(); !r) {
        return detail::fail(p.spec, r.error());
    }
    auto app = p.create(std::move(*cfg));
    if (!app) {
        return detail::fail(p.spec, app.error());
    }
    return (*app)->run();
}

}  // namespace sp::daemon
