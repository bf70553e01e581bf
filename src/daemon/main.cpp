// SPDX-License-Identifier: Apache-2.0
#include "daemon/main.hpp"

#include <cstdio>

#include "base/event.hpp"
#include "base/signals.hpp"
#include "config.h"
#include "config/keys.hpp"

namespace sp::daemon::detail {

int fail(const cli::DaemonSpec& spec, const Error& e) {
    std::fprintf(stderr, "%s: %s\n", spec.program.data(), e.describe().c_str());
    return e.exit_code();
}

std::optional<int> prologue(const cli::DaemonSpec& spec, int argc, char** argv,
                            cli::DaemonOptions& ret_opt) {
    auto opt = cli::parse_daemon_args(
        spec, std::span<const char* const>(argv + 1, static_cast<size_t>(argc - 1)));
    if (!opt) {
        return fail(spec, opt.error());
    }
    if (const auto code = cli::print_info(spec, *opt, SP_VERSION)) {
        return *code;
    }
    if (opt->gen_key) {
        auto line = config::generate_key_line(*opt->gen_key);
        if (!line) {
            return fail(spec, line.error());
        }
        std::fputs(line->c_str(), stdout);
        return 0;
    }
    log::configure(spec.program, opt->log_target.value_or(log::Target::Auto),
                   opt->log_level.value_or(log::Level::Info));
    ret_opt = std::move(*opt);
    return std::nullopt;
}

Result<void> raise_limits() {
    if (auto r = raise_fd_limit(); !r) {
        return Unexpected(r.error());
    }
    return {};
}

}  // namespace sp::daemon::detail
