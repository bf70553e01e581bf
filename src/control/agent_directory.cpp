// SPDX-License-Identifier: Apache-2.0
#include "control/agent_directory.hpp"

namespace sp::control {

AgentDirectory::Claim AgentDirectory::claim(const std::string& name, const std::string& identity,
                                            uint64_t conn) {
    const auto it = names_.find(name);
    if (it == names_.end()) {
        names_.emplace(name, Entry{conn, identity});
        return {Verdict::Granted, 0};
    }
    const uint64_t holder = it->second.conn;
    if (holder == conn) {
        return {Verdict::Granted, 0};
    }
    // An empty identity (a certificate without a CN) proves nothing, so it
    // never takes a name over.
    if (identity.empty() || it->second.identity != identity) {
        return {Verdict::Conflict, holder};
    }
    it->second.conn = conn;
    return {Verdict::Replaces, holder};
}

void AgentDirectory::release(const std::string& name, uint64_t conn) noexcept {
    const auto it = names_.find(name);
    if (it != names_.end() && it->second.conn == conn) {
        names_.erase(it);
    }
}

std::optional<uint64_t> AgentDirectory::holder(const std::string& name) const {
    const auto it = names_.find(name);
    if (it == names_.end()) {
        return std::nullopt;
    }
    return it->second.conn;
}

}  // namespace sp::control
