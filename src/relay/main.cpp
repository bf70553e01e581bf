// SPDX-License-Identifier: Apache-2.0
// sallyport-relay: the DMZ daemon. daemon::run_main does the common part;
// relay::App is the composition root.
#include "daemon/main.hpp"

#include "base/events.hpp"
#include "config.h"
#include "config/relay_config.hpp"
#include "relay/app.hpp"

namespace {

const sp::daemon::Program<sp::config::RelayConfig, sp::relay::App> kProgram{
    {"sallyport-relay",
     "DMZ relay: opens the public listeners that connected agents ask for and splices clients "
     "to agents' data channels.",
     SP_SYSCONFDIR "/relay.toml", true},
    &sp::config::load_relay_config,
    &sp::config::check_relay_config,
    &sp::relay::App::create,
};

}  // namespace

int main(int argc, char** argv) {
    sp::log::set_side(sp::log::Side::Relay);
    return sp::daemon::run_main(kProgram, argc, argv);
}
