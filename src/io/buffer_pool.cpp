// SPDX-License-Identifier: Apache-2.0
#include "io/buffer_pool.hpp"

#include <utility>

namespace sp::io {

Buffer BufferPool::take() {
    ++in_use_;
    if (!free_.empty()) {
        Buffer b = std::move(free_.back());
        free_.pop_back();
        return b;
    }
    return std::make_unique_for_overwrite<std::byte[]>(size_);
}

void BufferPool::give(Buffer b) noexcept {
    if (!b) {
        return;
    }
    if (in_use_ > 0) {
        --in_use_;
    }
    if (free_.size() < max_cached_) {
        free_.push_back(std::move(b));
    }
}

}  // namespace sp::io
