// SPDX-License-Identifier: Apache-2.0
// Ring: RAII owner of one io_uring, with SQE acquisition that never fails
// because the SQ is full, and batch CQE draining.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "base/result.hpp"

namespace sp::io {

/// A completion copied out of the CQ, so handlers can submit freely.
struct Completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

class Ring final {
    struct Private {  // passkey: only create() can construct one
        explicit Private() = default;
    };

public:
    /// Sets up a ring with `entries` SQEs and `cq_entries` CQEs. Tries
    /// SINGLE_ISSUER|DEFER_TASKRUN (created disabled, so the thread that calls
    /// enable() becomes the issuer), then COOP_TASKRUN, then no flags.
    /// Returns the error of the last attempt (ENOSYS/EPERM when io_uring is
    /// unavailable or blocked by seccomp).
    [[nodiscard]] static Result<std::unique_ptr<Ring>> create(unsigned entries,
                                                              unsigned cq_entries);
    ~Ring();
    explicit Ring(const Private&) noexcept {}
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    /// Must be called once by the thread that will submit, before any SQE.
    /// Returns 0 or -errno.
    [[nodiscard]] int enable() noexcept;

    /// A zeroed SQE. When the SQ is full it submits and retries; returns
    /// nullptr only if the kernel refuses to take SQEs (-EBUSY with a CQ
    /// overflow backlog), which the caller treats as a resource error.
    [[nodiscard]] io_uring_sqe* get_sqe() noexcept;

    /// Submits pending SQEs without waiting. Returns the count or -errno.
    int submit() noexcept;
    /// Submits and waits for at least one CQE (runs deferred task work).
    /// Returns >= 0 or -errno (-EINTR is normal).
    int submit_and_wait() noexcept;
    /// Submits and flushes deferred task work without blocking.
    int submit_and_get_events() noexcept;

    /// Copies up to `max` CQEs into `out` and advances the CQ; returns the count.
    unsigned drain(Completion* out, unsigned max) noexcept;

    [[nodiscard]] unsigned setup_flags() const noexcept { return flags_; }
    [[nodiscard]] io_uring* raw() noexcept { return &ring_; }

    /// Makes room for `n` SQEs that must go in one submission (linked SQEs).
    void reserve(unsigned n) noexcept;

private:
    io_uring ring_{};
    unsigned flags_ = 0;
    bool needs_enable_ = false;
};

}  // namespace sp::io
