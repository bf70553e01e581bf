// SPDX-License-Identifier: Apache-2.0
// sallyport-relay: the DMZ daemon. main() is the one place that turns an
// error into an exit code (SPEC section 2: 0 ok, 1 runtime, 2 usage/config).
#include <cstdio>
#include <span>

#include <fmt/format.h>

#include "base/cli.hpp"
#include "base/event.hpp"
#include "base/signals.hpp"
#include "config.h"
#include "config/keys.hpp"
#include "config/relay_config.hpp"
#include "relay/relay.hpp"

namespace {

constexpr sp::cli::DaemonSpec kSpec{
    "sallyport-relay",
    "DMZ relay: opens the public listeners that connected agents ask for and splices clients "
    "to agents' data channels.",
    SP_SYSCONFDIR "/relay.toml", true};

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
    if (opt->gen_key) {
        auto line = sp::config::generate_key_line(*opt->gen_key);
        if (!line) {
            return fail(line.error());
        }
        std::fputs(line->c_str(), stdout);
        return 0;
    }
    sp::log::configure("sallyport-relay", opt->log_target.value_or(sp::log::Target::Auto),
                       opt->log_level.value_or(sp::log::Level::Info));
    if (opt->check_config) {
        // Every error of the file and of the key or certificate files it
        // names, not just the first; sp::config owns those checks.
        const auto errors = sp::config::check_relay_config(opt->config_path);
        for (const auto& e : errors) {
            (void)fail(e);
        }
        if (errors.empty()) {
            std::puts("OK");
        }
        return errors.empty() ? 0 : 2;
    }
    auto cfg = sp::config::load_relay_config(opt->config_path);
    if (!cfg) {
        return fail(cfg.error());
    }
    if (auto r = sp::raise_fd_limit(); !r) {
        return fail(r.error());
    }
    auto relay = sp::relay::Relay::create(std::move(*cfg));
    if (!relay) {
        return fail(relay.error());
    }
    return (*relay)->run();
}
