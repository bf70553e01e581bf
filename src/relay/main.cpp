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
#include "config/common.hpp"
#include "config/keys.hpp"
#include "config/relay_config.hpp"
#include "relay/app.hpp"

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

// --check-config goes as far as a start would: key and certificate files
// must be readable and private, not just named.
sp::Result<void> check_files(const sp::config::RelayConfig& cfg) {
    if (cfg.shared_key_mode()) {
        if (auto k = sp::config::load_keys(cfg.auth.keys, false); !k) {
            return sp::Unexpected(k.error());
        }
    }
    for (const auto* f : {&cfg.auth.certificate, &cfg.auth.private_key, &cfg.auth.agent_ca}) {
        if (!f->empty()) {
            if (auto r = sp::config::check_readable(*f); !r) {
                return r;
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
    auto cfg = sp::config::load_relay_config(opt->config_path);
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
    auto relay = sp::relay::App::create(std::move(*cfg));
    if (!relay) {
        return fail(relay.error());
    }
    return (*relay)->run();
}
