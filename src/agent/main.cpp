// SPDX-License-Identifier: Apache-2.0
// sallyport-agent: the inside daemon. daemon::run_main does the common part.
#include "daemon/main.hpp"

#include "agent/app.hpp"
#include "base/events.hpp"
#include "config.h"
#include "config/agent_config.hpp"

namespace {

const sp::daemon::Program<sp::config::AgentConfig, sp::agent::App> kProgram{
    {"sallyport-agent",
     "Inside agent: dials out to relays, pushes the service configuration and connects "
     "relayed clients to backends.",
     SP_SYSCONFDIR "/agent.toml", false},
    &sp::config::load_agent_config,
    &sp::config::check_agent_config,
    &sp::agent::App::create,
};

}  // namespace

int main(int argc, char** argv) {
    sp::log::set_side(sp::log::Side::Agent);
    return sp::daemon::run_main(kProgram, argc, argv);
}
