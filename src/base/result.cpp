// SPDX-License-Identifier: Apache-2.0
#include "base/result.hpp"

#include <cstring>

namespace sp {

std::string Error::describe() const {
    std::string out;
    if (!file.empty()) {
        out = file;
        if (line > 0) {
            out += fmt::format(":{}:{}", line, column);
        }
        out += ": ";
    }
    if (!key.empty()) {
        out += fmt::format("{}: ", key);
    }
    out += message;
    if (code != 0) {
        out += fmt::format(": {}", std::strerror(code));
    }
    return out;
}

}  // namespace sp
