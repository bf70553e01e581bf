// SPDX-License-Identifier: Apache-2.0
// Shared-key files (SPEC section 4): lines "ID SECRET", SECRET being 32 random
// bytes in unpadded base64url. The relay holds many, an agent exactly one.
// Files readable by group or others, or owned by another user, are refused.
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

/// Parses key-file text. Blank lines and lines starting with '#' (after
/// optional blanks) are skipped; fields are separated by spaces or tabs; a
/// trailing CR is ignored. Errors are ErrorKind::Config naming `path:LINE:COL`
/// (the column of the offending field) with `key` set to the key ID when the ID
/// itself is valid. Duplicate IDs are an error naming the first line. A secret
/// is never echoed back. Returns an empty vector for text without key lines.
[[nodiscard]] Result<std::vector<Key>> parse_keys(std::string_view text, const std::string& path);

/// Reads a key file after checking, on the opened fd, that it is a regular
/// file (a FIFO or device is refused without blocking) with no permission bits
/// for group or others (the message says: chmod 600 FILE), owned by root, by
/// the effective uid of this process or by the service user "sallyport" (the
/// owner can rewrite it; the message says: chown USER FILE); at most 1 MiB.
/// Errors are ErrorKind::Config with `file` set (`code` = errno for open/read
/// failures). A file without keys is an error; `expect_one` is the agent's
/// rule: exactly one key line. Blocks only on the file read; the read buffer
/// is wiped before returning.
[[nodiscard]] Result<std::vector<Key>> load_keys(const std::string& path, bool expect_one);

/// Reads any file holding secrets (the forward proxy's users file) after
/// the same checks as load_keys(): regular file, no permission bits for
/// group or others, owner root, this process's user or "sallyport", at
/// most 1 MiB. `what` names the file in messages ("users file"). The
/// caller wipes the text when done. Blocks only on the file read.
[[nodiscard]] Result<std::string> read_private_file(const std::string& path, std::string_view what);

/// The bytes of `path`, or "" when it cannot be read: for telling whether
/// key material changed across a reload, never for parsing it.
[[nodiscard]] std::string file_bytes(const std::string& path);

/// --check-config for a key file: every error load_keys() would stop at the
/// first of (each bad line is reported, then the whole-file rules). Empty
/// when load_keys() would succeed. Blocks on the file read only.
[[nodiscard]] std::vector<Error> check_key_file(const std::string& path, bool expect_one);

/// A fresh key line "ID SECRET\n" from getrandom(2) (32 bytes, unpadded
/// base64url). A bad `id` is a Usage error; getrandom only blocks before the
/// kernel's pool is initialised at boot.
[[nodiscard]] Result<std::string> generate_key_line(std::string_view id);

/// RFC 4648 section 5 alphabet, no padding.
[[nodiscard]] std::string base64url_encode(const std::vector<uint8_t>& bytes);
/// Strict inverse of base64url_encode: refuses padding, the standard '+' '/'
/// alphabet, whitespace, impossible lengths and non-zero trailing bits, so a
/// secret has exactly one spelling. Messages never quote the input.
[[nodiscard]] Result<std::vector<uint8_t>> base64url_decode(std::string_view text);

}  // namespace sp::config
