// SPDX-License-Identifier: Apache-2.0
// The agent's configuration as the relay sees it: HELLO from [agent], CONFIG
// from the [[service]] blocks. Backend addresses and PROXY settings stay in
// the agent; the relay never learns them.
#pragma once

#include <cstdint>
#include <vector>

#include "config/agent_config.hpp"
#include "control/frame.hpp"

namespace sp::agent {

/// HELLO: name, software version, pool (capped at the field's 65535) and the
/// default heartbeat request.
[[nodiscard]] control::Hello make_hello(const config::AgentSection& agent);
/// CONFIG `generation` listing every service's listeners and client rules.
[[nodiscard]] control::Config make_config(const std::vector<config::Service>& services,
                                          uint32_t generation);

}  // namespace sp::agent
