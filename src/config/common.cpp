// SPDX-License-Identifier: Apache-2.0
#include "config/common.hpp"

#include <cstdio>

namespace sp::config {

std::optional<DataPath> parse_data_path(std::string_view s) noexcept {
    if (s == "splice") {
        return DataPath::Splice;
    }
    if (s == "copy") {
        return DataPath::Copy;
    }
    return std::nullopt;
}

std::string_view data_path_name(DataPath p) noexcept {
    switch (p) {
        case DataPath::Splice:
            return "splice";
        case DataPath::Copy:
            return "copy";
    }
    return "?";
}

Result<void> check_readable(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "re");
    if (f == nullptr) {
        return errno_error("cannot read \"{}\"", path);
    }
    std::fclose(f);
    return {};
}

}  // namespace sp::config
