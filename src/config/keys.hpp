// SPDX-License-Identifier: Apache-2.0
// Shared-key files (SPEC section 4): lines "ID SECRET", SECRET being 32 random
// bytes in unpadded base64url. The relay holds many, an agent exactly one.
// Files readable by group or others are refused.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace sp::config {

struct Key {
    std::string id;               // 1-64 chars of [A-Za-z0-9._-]
    std::vector<uint8_t> secret;  // exactly 32 bytes
};

/// Parses key-file text. Blank lines and lines starting with '#' are
/// skipped. Errors name `path:LINE:COL`; a secret is never echoed back.
[[nodiscard]] Result<std::vector<Key>> parse_keys(std::string_view text, const std::string& path);

/// Reads a key file after checking that it is a regular file not readable or
/// writable by group or others (the message says: chmod 600 FILE).
/// `expect_one` is the agent's rule: exactly one key line.
[[nodiscard]] Result<std::vector<Key>> load_keys(const std::string& path, bool expect_one);

/// A fresh key line "ID SECRET\n" from getrandom(2); `id` is validated.
[[nodiscard]] Result<std::string> generate_key_line(std::string_view id);

[[nodiscard]] std::string base64url_encode(const std::vector<uint8_t>& bytes);
[[nodiscard]] Result<std::vector<uint8_t>> base64url_decode(std::string_view text);

}  // namespace sp::config
