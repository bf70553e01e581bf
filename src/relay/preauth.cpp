// SPDX-License-Identifier: Apache-2.0
#include "relay/preauth.hpp"

#include <cstring>

namespace sp::relay {

PreAuth::Key PreAuth::key_of(const IpAddress& ip) noexcept {
    const IpAddress u = ip.unmapped();
    Key k;
    if (u.family() == AF_INET) {
        uint32_t v4 = 0;
        std::memcpy(&v4, u.bytes().data(), sizeof v4);
        k.lo = v4;
        k.hi = 1;  // never a v6 /64's upper half with lo set this way
    } else {
        std::memcpy(&k.hi, u.bytes().data(), sizeof k.hi);  // the /64 prefix
        k.lo = ~0ULL;
    }
    return k;
}

bool PreAuth::enter(const IpAddress& ip) {
    if (total_ >= cap_) {
        return false;
    }
    size_t& n = by_address_[key_of(ip)];
    if (n >= per_address_) {
        if (n == 0) {
            by_address_.erase(key_of(ip));
        }
        return false;
    }
    ++n;
    ++total_;
    return true;
}

void PreAuth::leave(const IpAddress& ip) noexcept {
    const auto it = by_address_.find(key_of(ip));
    if (it == by_address_.end()) {
        return;
    }
    if (--it->second == 0) {
        by_address_.erase(it);
    }
    --total_;
}

size_t PreAuth::of(const IpAddress& ip) const {
    const auto it = by_address_.find(key_of(ip));
    return it == by_address_.end() ? 0 : it->second;
}

}  // namespace sp::relay
