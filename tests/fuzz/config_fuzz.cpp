// SPDX-License-Identifier: Apache-2.0
// relay.toml, agent.toml and key files come from admins, but a parser must
// still never crash, hang or leak on any input: every outcome is a value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/agent_config.hpp"
#include "config/keys.hpp"
#include "config/relay_config.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::string path = "fuzz.toml";
    if (auto relay = sp::config::parse_relay_config(text, path); relay) {
        // Accepted values must satisfy the invariants other modules rely on.
        // Exactly one auth mode (sallyport.toml(5)).
        if (relay->relay.control_listen.empty() || relay->relay.threads > 1024 ||
            relay->auth.keys.empty() == relay->auth.certificate.empty()) {
            __builtin_trap();
        }
        for (const auto& a : relay->relay.allow_listen) {
            if (!a.ip || !sp::config::listen_allowed(*relay, a)) {
                __builtin_trap();
            }
        }
    } else if (relay.error().kind != sp::ErrorKind::Config || relay.error().line < 1 ||
               relay.error().column < 1 || relay.error().file != path) {
        __builtin_trap();
    }
    if (auto agent = sp::config::parse_agent_config(text, path); agent) {
        if (agent->relays.empty() || agent->agent.name.empty()) {
            __builtin_trap();
        }
        for (const auto& s : agent->services) {
            if (s.listen.empty() || s.backend.empty()) {
                __builtin_trap();
            }
        }
    } else if (agent.error().kind != sp::ErrorKind::Config || agent.error().line < 1 ||
               agent.error().column < 1) {
        __builtin_trap();
    }
    // Collecting every error agrees with stopping at the first: none exactly
    // when the parse succeeds, every one positioned, in file order, bounded.
    for (const auto& [errors, parsed_ok] :
         {std::pair{sp::config::relay_config_errors(text, path),
                    sp::config::parse_relay_config(text, path).has_value()},
          std::pair{sp::config::agent_config_errors(text, path),
                    sp::config::parse_agent_config(text, path).has_value()}}) {
        if (errors.empty() != parsed_ok || errors.size() > 101) {
            __builtin_trap();
        }
        for (size_t i = 0; i < errors.size(); ++i) {
            const bool note = i == 100;  // "N more errors not shown"
            if (errors[i].kind != sp::ErrorKind::Config || (!note && errors[i].line < 1) ||
                (i > 0 && !note && errors[i].line < errors[i - 1].line)) {
                __builtin_trap();
            }
        }
    }
    if (auto keys = sp::config::parse_keys(text, "fuzz.keys"); keys) {
        for (const auto& k : *keys) {
            if (k.secret.size() != 32 || k.id.empty()) {
                __builtin_trap();
            }
        }
    }
    if (auto bytes = sp::config::base64url_decode(text); bytes) {
        if (sp::config::base64url_encode(*bytes) != text) {
            __builtin_trap();
        }
    }
    return 0;
}
