// SPDX-License-Identifier: Apache-2.0
// Ring: RAII owner of one io_uring, with SQE acquisition that never fails
// because the SQ is full, cancels that are never lost, and batch CQE draining.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

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
    /// overflow backlog), which the caller treats as a resource condition:
    /// it remembers what it wanted to arm and tries again from the loop once
    /// completions were reaped (never a silent drop).
    [[nodiscard]] io_uring_sqe* get_sqe() noexcept;

    /// Queues IORING_OP_ASYNC_CANCEL for the request tagged `user_data`; its
    /// CQE carries Op::Cancel. When the SQ refuses, the cancel is kept and
    /// flush_cancels() sends it later. Only for tags that are never reused
    /// while the cancel may be pending (listener and waiter ids): a cancel by
    /// fd number could hit a reused fd, so the pump cancels by fd itself and
    /// keeps its fds open until every CQE arrived.
    void cancel(uint64_t user_data) noexcept;
    /// Sends cancels an earlier cancel() could not. Returns true while some
    /// are still waiting for room.
    [[nodiscard]] bool flush_cancels() noexcept;

    /// Submits pending SQEs without waiting. Returns the count or -errno.
    int submit() noexcept;
    /// Submits and waits for at least one CQE or until `timeout` passed
    /// (then -ETIME). Needs no SQE for the timeout (IORING_FEAT_EXT_ARG,
    /// Linux 5.11). Returns >= 0 or -errno.
    int submit_and_wait_for(std::chrono::nanoseconds timeout) noexcept;
    /// Submits and flushes deferred task work without blocking.
    int submit_and_get_events() noexcept;

    /// Copies up to `max` CQEs into `out` and advances the CQ past them (and
    /// past liburing's own timeout CQEs, which it drops); returns the count.
    unsigned drain(Completion* out, unsigned max) noexcept;

    [[nodiscard]] unsigned setup_flags() const noexcept { return flags_; }
    [[nodiscard]] io_uring* raw() noexcept { return &ring_; }

    /// Tests only: the next `n` get_sqe() calls return nullptr, as when the
    /// kernel refuses SQEs, so the recovery paths can be exercised.
    void refuse_sqes_for_testing(unsigned n) noexcept { refuse_ = n; }

private:
    io_uring ring_{};
    unsigned flags_ = 0;
    bool needs_enable_ = false;
    unsigned refuse_ = 0;
    std::vector<uint64_t> cancel_backlog_;
};

}  // namespace sp::io
