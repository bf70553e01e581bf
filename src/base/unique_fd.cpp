// SPDX-License-Identifier: Apache-2.0
#include "base/unique_fd.hpp"

#include <unistd.h>

namespace sp {

void UniqueFd::reset(int fd) noexcept {
    const int old = std::exchange(fd_, fd);
    if (old >= 0 && old != fd) {
        (void)::close(old);  // see the header: never retried
    }
}

}  // namespace sp
