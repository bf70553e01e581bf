// SPDX-License-Identifier: Apache-2.0
#include "outbound/target.hpp"

#include <fmt/format.h>

namespace sp::outbound {

std::string Target::to_string() const {
    if (host.find(':') != std::string::npos) {
        return fmt::format("[{}]:{}", host, port);
    }
    return fmt::format("{}:{}", host, port);
}

bool valid_host(std::string_view host) noexcept {
    if (host.empty() || host.size() > kMaxHost) {
        return false;
    }
    for (const char c : host) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' || c == ':';
        if (!ok) {
            return false;
        }
    }
    return true;
}

}  // namespace sp::outbound
