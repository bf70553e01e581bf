// SPDX-License-Identifier: Apache-2.0
// sallyport-agent: the inside daemon. main() is the one place that turns an
// error into an exit code (SPEC section 2: 0 ok, 1 runtime, 2 usage/config).
#include <cstdio>
#include <span>

#include "agent/app.hpp"
#include "base/cli.hpp"
#include "base/event.hpp"
#include "base/signals.hpp"
#include "config.h"
#include "config/agent_config.hpp"
#include "config/common.hpp"
#include "config/keys.hpp"

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

// --check-config goes as far as a start would: every relay's key or
// certificate files must be readable and private.
sp::Result<void> check_files(const sp::config::AgentConfig& cfg) {
    for (const auto& r : cfg.relays) {
        if (r.shared_key_mode()) {
            if (auto k = sp::config::load_keys(r.key, true); !k) {
                return sp::Unexpected(k.error());
            }
        }
        for (const auto* f : {&r.certificate, &r.private_key, &r.relay_ca}) {
            if (!f->empty()) {
                if (auto c = sp::config::check_readable(*f); !c) {
                    return c;
                }
            }
        }
    }
    return {};
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
    auto cfg = sp::config::load_agent_config(opt->config_path);
    if (!cfg) {
        return fail(cfg.error());
    }
    if (opt->check_config) {
        if (auto r = check_files(*cfg); !r) {
            return fail(r.error());
        }
        std::puts("OK");
        return 0;
    }
    if (auto r = sp::raise_fd_limit(); !r) {
        return fail(r.error());
    }
    auto app = sp::agent::App::create(std::move(*cfg));
    if (!app) {
        return fail(app.error());
    }
    return (*app)->run();
}
