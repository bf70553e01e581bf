// SPDX-License-Identifier: Apache-2.0
// Settings shared by relay.toml and agent.toml.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace sp::config {

/// How a worker moves bytes: splice(2) through a pipe (zero copy), or
/// io_uring recv/send through provided buffers (faster on loopback and veth).
enum class DataPath { Splice, Copy };

[[nodiscard]] std::optional<DataPath> parse_data_path(std::string_view s) noexcept;
[[nodiscard]] std::string_view data_path_name(DataPath p) noexcept;

/// `path` opens for reading now (a certificate, key or CA file named in a
/// config): what --check-config verifies beyond the syntax. Runtime error
/// with errno otherwise.
[[nodiscard]] Result<void> check_readable(const std::string& path);

}  // namespace sp::config
