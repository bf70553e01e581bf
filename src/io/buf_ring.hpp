// SPDX-License-Identifier: Apache-2.0
// BufRing: a provided-buffer ring for the io_uring copy path. A RECV picks a
// buffer only when data arrives, so idle sessions hold none.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/result.hpp"

namespace sp::io {

/// Not thread-safe: registered on, and used by, one worker's ring.
/// liburing 2.3 has no io_uring_setup_buf_ring(), so we mmap the ring
/// ourselves and register it with io_uring_register_buf_ring() (kernel 5.19+).
class BufRing final {
    struct Private {
        explicit Private() = default;
    };

public:
    /// Registers `count` buffers of `size` bytes as group `group` on `ring`.
    /// `count` is rounded up to a power of two (at most 32768). Must run on the
    /// ring's issuer thread. Errors: EINVAL on kernels without buffer rings,
    /// ENOMEM.
    [[nodiscard]] static Result<std::unique_ptr<BufRing>> create(io_uring* ring, uint16_t group,
                                                                 uint32_t count, uint32_t size);
    explicit BufRing(const Private&) noexcept {}
    /// Frees the memory without unregistering: the owner destroys the ring
    /// first (which drops the registration and every request using it).
    ~BufRing();
    BufRing(const BufRing&) = delete;
    BufRing& operator=(const BufRing&) = delete;

    [[nodiscard]] std::byte* data(uint16_t bid) noexcept { return buffers_ + size_t{bid} * size_; }
    /// Takes note that a completion handed us `bid`.
    void took() noexcept { ++in_use_; }
    /// Hands `bid` back to the kernel for future RECVs.
    void give(uint16_t bid) noexcept;

    [[nodiscard]] uint16_t group() const noexcept { return group_; }
    [[nodiscard]] uint32_t size() const noexcept { return size_; }
    [[nodiscard]] uint32_t count() const noexcept { return count_; }
    [[nodiscard]] size_t in_use() const noexcept { return in_use_; }

private:
    io_uring_buf_ring* br_ = nullptr;
    size_t ring_bytes_ = 0;
    std::byte* buffers_ = nullptr;
    size_t buffer_bytes_ = 0;
    uint32_t count_ = 0;
    uint32_t size_ = 0;
    uint16_t group_ = 0;
    size_t in_use_ = 0;
};

}  // namespace sp::io
