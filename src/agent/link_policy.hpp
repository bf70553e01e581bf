// SPDX-License-Identifier: Apache-2.0
// Which relay links the agent wants up (protocol doc section 5.2, last
// rule): every primary, always; a standby only while no primary is Ready.
// Pure: the caller passes each link's phase and carries out the verdicts.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sp::agent {

/// A link's state as the policy sees it.
enum class LinkPhase : uint8_t {
    Idle,     // not wanted, nothing in flight
    Backoff,  // wanted, waiting to retry
    Trying,   // connect, TLS or HELLO in flight
    Ready,
};

struct LinkView {
    bool standby = false;
    LinkPhase phase = LinkPhase::Idle;
};

/// Verdict per link. Run: Start it (a no-op when it already runs). The Stop
/// verdicts name the reason the link's GOODBYE and event give.
enum class Want : uint8_t { Run, StopStandby, StopShutdown };

/// One verdict per entry of `links`, same order. While `stopping`, nothing
/// runs. A standby is not started while a primary attempt is in flight or
/// about to start (an idle primary, at start-up say), so its relay does not
/// open listeners for a moment only to close them again; once up or trying
/// it is kept until a primary is Ready.
[[nodiscard]] std::vector<Want> wanted_links(std::span<const LinkView> links, bool stopping);

}  // namespace sp::agent
