// SPDX-License-Identifier: Apache-2.0
// sallyportctl's human output: a daemon's JSON document as aligned
// key/value lines and tables, with units read from field-name suffixes
// (admin-protocol.md section "Documents"): _bytes, _s, _ms. Generic on
// purpose - a command the daemon adds later prints without a change here.
// Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "admin/protocol.hpp"

namespace sp::ctl {

/// "0 B", "512 B", "1.5 KiB", "12.3 MiB", "1.02 GiB" (IEC, three digits).
[[nodiscard]] std::string format_bytes(uint64_t bytes);
/// "0s", "45s", "3m12s", "2h05m", "3d04h".
[[nodiscard]] std::string format_seconds(double seconds);
/// "0.4 ms", "12 ms", "1.25 s".
[[nodiscard]] std::string format_millis(double ms);

/// A value as a person reads it, its unit taken from `key`'s suffix.
[[nodiscard]] std::string format_value(std::string_view key, const admin::Json& value);
/// The column or line label for `key`: the unit suffix dropped, '_' as
/// ' ' ("uptime_s" -> "uptime"); upper case for table headers.
[[nodiscard]] std::string label(std::string_view key, bool upper);

/// The whole document: members with a scalar value as aligned "label:
/// value" lines, objects as indented blocks, arrays of objects as tables
/// (columns in first-seen key order, numbers right-aligned). An empty
/// object prints "OK". `data` that is not an object prints as JSON.
[[nodiscard]] std::string format_document(const admin::Json& data);

}  // namespace sp::ctl
