// SPDX-License-Identifier: Apache-2.0
// A relay link's identity: assigned once when the link is created, never
// reused, and kept across reloads that leave its [[relay]] entry unchanged.
// Channels and sessions name their link by it, never by a position in a
// list that a reload rebuilds.
#pragma once

#include <cstdint>

namespace sp::agent {

enum class LinkId : uint64_t {};

}  // namespace sp::agent
