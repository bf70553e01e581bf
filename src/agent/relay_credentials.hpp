// SPDX-License-Identifier: Apache-2.0
// A [[relay]] entry's TLS client context, loaded from its key file (shared-
// key mode) or its certificate files, with a fingerprint of the material so
// a reload can tell whether a link must reconnect.
#pragma once

#include <string>

#include "base/result.hpp"
#include "config/agent_config.hpp"
#include "control/tls.hpp"

namespace sp::agent {

struct RelayCredentials {
    control::TlsContext tls;
    std::string key_id;       // PSK identity (shared-key mode), for KEY_ID; else empty
    std::string fingerprint;  // SHA-256 of the key material, compared on reload
};

/// Reads the key file (ownership and mode checked) or the certificate files
/// of `entry`. Blocks on the file reads only.
[[nodiscard]] Result<RelayCredentials> load_credentials(const config::RelayEntry& entry);

}  // namespace sp::agent
