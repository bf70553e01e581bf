// SPDX-License-Identifier: Apache-2.0
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/addr.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto hp = sp::HostPorts::parse(text, true); hp) {
        // Whatever parses must print back to something that parses the same.
        auto again = sp::HostPorts::parse(hp->to_string(), true);
        if (!again || again->ports != hp->ports) {
            __builtin_trap();
        }
    }
    if (auto c = sp::Cidr::parse(text); c) {
        auto again = sp::Cidr::parse(c->to_string());
        if (!again || again->prefix() != c->prefix() || !again->contains(c->network())) {
            __builtin_trap();
        }
    }
    (void)sp::SocketAddress::parse(text);
    return 0;
}
