// SPDX-License-Identifier: Apache-2.0
// sallyport-agent: the inside daemon. main() is the one place that turns an
// error into an exit code (SPEC section 2: 0 ok, 1 runtime, 2 usage/config).
#include <cstdio>
#include <span>

#include "agent/agent.hpp"
#include "base/cli.hpp"
#include "base/event.hpp"
#include "base/signals.hpp"
#include "config.h"
#include "config/agent_config.hpp"

namespace {

constexpr sp::cli::DaemonSpec kSpec{
    "sallyport-agent",
    "Inside agent: dials out to relays, pushes the service configuration and connects "
    "relayed clients to backends.",
    SP_SYSCONFDIR "/agent.toml", false};

int fail(const sp::Error& e) {
    std::fprintf(stderr, "%s: %s\n", kSpec.program.data(), e.describe().c_str());
    return e.exit_code();
}

}  // namespace

int main(int argc, char** argv) {
    auto opt = sp::cli::parse_daemon_args(
        kSpec, std::span<const char* const>(argv + 1, static_cast<size_t>(argc - 1)));
    if (!opt) {
        return fail(opt.error());
    }
    if (const auto code = sp::cli::print_info(kSpec, *opt, SP_VERSION)) {
        return *code;
    }
    sp::log::configure("sallyport-agent", opt->log_target.value_or(sp::log::Target::Auto),
                       opt->log_level.value_or(sp::log::Level::Info));
    if (opt->check_config) {
        // Every error of the file and of the key or certificate files it
        // names, not just the first; sp::config owns those checks.
        const auto errors = sp::config::check_agent_config(opt->config_path);
        for (const auto& e : errors) {
            (void)fail(e);
        }
        if (errors.empty()) {
            std::puts("OK");
        }
        return errors.empty() ? 0 : 2;
    }
    auto cfg = sp::config::load_agent_config(opt->config_path);
    if (!cfg) {
        return fail(cfg.error());
    }
    if (auto r = sp::raise_fd_limit(); !r) {
        return fail(r.error());
    }
    auto agent = sp::agent::Agent::create(std::move(*cfg));
    if (!agent) {
        return fail(agent.error());
    }
    return (*agent)->run();
}
