// SPDX-License-Identifier: Apache-2.0
// BufferPool: a worker's fixed-size copy buffers, taken only while bytes are in
// flight (copy path and splice fallback), so idle sessions hold none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace sp::io {

using Buffer = std::unique_ptr<std::byte[]>;

/// Not thread-safe: one per worker.
class BufferPool final {
public:
    /// `max_cached`: buffers kept for reuse; more given back are freed.
    explicit BufferPool(uint32_t buffer_size, size_t max_cached = 256) noexcept
        : size_(buffer_size), max_cached_(max_cached) {}

    /// A buffer of size() bytes (allocates when the cache is empty).
    [[nodiscard]] Buffer take();
    void give(Buffer b) noexcept;

    [[nodiscard]] uint32_t size() const noexcept { return size_; }
    [[nodiscard]] size_t in_use() const noexcept { return in_use_; }
    [[nodiscard]] size_t cached() const noexcept { return free_.size(); }

private:
    uint32_t size_;
    size_t max_cached_;
    size_t in_use_ = 0;
    std::vector<Buffer> free_;
};

}  // namespace sp::io
