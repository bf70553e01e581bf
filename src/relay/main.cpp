// SPDX-License-Identifier: Apache-2.0
// sallyport-relay: the DMZ daemon. daemon::run_main does the common part.
#include "daemon/main.hpp"

#include "config.h"
#include "config/common.hpp"
#include "config/keys.hpp"
#include "config/relay_config.hpp"
#include "relay/relay.hpp"

namespace {

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

const sp::daemon::Program<sp::config::RelayConfig, sp::relay::Relay> kProgram{
    {"sallyport-relay",
     "DMZ relay: opens the public listeners that connected agents ask for and splices clients "
     "to agents' data channels.",
     SP_SYSCONFDIR "/relay.toml", true},
    &sp::config::load_relay_config,
    &check_files,
    &sp::relay::Relay::create,
};

}  // namespace

int main(int argc, char** argv) {
    return sp::daemon::run_main(kProgram, argc, argv);
}
