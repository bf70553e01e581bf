// SPDX-License-Identifier: Apache-2.0
// Settings shared by relay.toml and agent.toml.
#pragma once

#include <optional>
#include <string_view>

namespace sp::config {

/// How a worker moves bytes: splice(2) through a pipe (zero copy), or
/// io_uring recv/send through provided buffers (faster on loopback and veth).
enum class DataPath { Splice, Copy };

[[nodiscard]] std::optional<DataPath> parse_data_path(std::string_view s) noexcept;
[[nodiscard]] std::string_view data_path_name(DataPath p) noexcept;

}  // namespace sp::config
