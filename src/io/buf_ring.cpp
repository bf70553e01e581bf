// SPDX-License-Identifier: Apache-2.0
#include "io/buf_ring.hpp"

#include <sys/mman.h>

#include <cerrno>

namespace sp::io {

Result<std::unique_ptr<BufRing>> BufRing::create(io_uring* ring, uint16_t group, uint32_t count,
                                                 uint32_t size) {
    uint32_t n = 1;
    while (n < count && n < 32768) {
        n <<= 1;
    }
    auto br = std::make_unique<BufRing>(Private{});
    br->count_ = n;
    br->size_ = size;
    br->group_ = group;
    // The ring must be page-aligned: mmap gives that, and the kernel pins it.
    br->ring_bytes_ = size_t{n} * sizeof(io_uring_buf);
    void* r =
        mmap(nullptr, br->ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r == MAP_FAILED) {
        return errno_error("mmap buffer ring ({} entries)", n);
    }
    br->br_ = static_cast<io_uring_buf_ring*>(r);
    br->buffer_bytes_ = size_t{n} * size;
    void* b = mmap(nullptr, br->buffer_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                   -1, 0);
    if (b == MAP_FAILED) {
        return errno_error("mmap {} copy buffers of {} bytes", n, size);
    }
    br->buffers_ = static_cast<std::byte*>(b);

    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(br->br_);
    reg.ring_entries = n;
    reg.bgid = group;
    int err = io_uring_register_buf_ring(ring, &reg, 0);
    if (err < 0) {
        return runtime_error(-err, "register buffer ring");
    }
    io_uring_buf_ring_init(br->br_);
    const int mask = io_uring_buf_ring_mask(n);
    for (uint32_t i = 0; i < n; ++i) {
        io_uring_buf_ring_add(br->br_, br->data(static_cast<uint16_t>(i)), size,
                              static_cast<uint16_t>(i), mask, static_cast<int>(i));
    }
    io_uring_buf_ring_advance(br->br_, static_cast<int>(n));
    return br;
}

BufRing::~BufRing() {
    if (buffers_ != nullptr) {
        munmap(buffers_, buffer_bytes_);
    }
    if (br_ != nullptr) {
        munmap(br_, ring_bytes_);
    }
}

void BufRing::give(uint16_t bid) noexcept {
    io_uring_buf_ring_add(br_, data(bid), size_, bid, io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(br_, 1);
    if (in_use_ > 0) {
        --in_use_;
    }
}

}  // namespace sp::io
