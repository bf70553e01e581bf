// SPDX-License-Identifier: Apache-2.0
// sallyport-agent: the inside daemon. daemon::run_main does the common part.
#include "daemon/main.hpp"

#include "agent/app.hpp"
#include "config.h"
#include "config/agent_config.hpp"
#include "config/common.hpp"
#include "config/keys.hpp"

namespace {

// Every relay's key or certificate files must be readable and private.
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

const sp::daemon::Program<sp::config::AgentConfig, sp::agent::App> kProgram{
    {"sallyport-agent",
     "Inside agent: dials out to relays, pushes the service configuration and connects "
     "relayed clients to backends.",
     SP_SYSCONFDIR "/agent.toml", false},
    &sp::config::load_agent_config,
    &check_files,
    &sp::agent::App::create,
};

}  // namespace

int main(int argc, char** argv) {
    return sp::daemon::run_main(kProgram, argc, argv);
}
