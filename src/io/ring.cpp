// SPDX-License-Identifier: Apache-2.0
#include "io/ring.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/op.hpp"

namespace sp::io {

Result<std::unique_ptr<Ring>> Ring::create(unsigned entries, unsigned cq_entries) {
    // Flag sets, best first. DEFER_TASKRUN runs completions only when we ask
    // for events, so no IPI interrupts the worker mid-batch; it requires
    // SINGLE_ISSUER, and R_DISABLED lets the worker thread (not the creator)
    // become the single issuer. COOP_TASKRUN (5.19) is the next best thing.
    constexpr unsigned kAttempts[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    auto ring = std::make_unique<Ring>(Private{});
    int err = -ENOSYS;
    for (unsigned flags : kAttempts) {
        io_uring_params p;
        std::memset(&p, 0, sizeof(p));
        // A large CQ: multishot polls and accepts can post many CQEs per SQE.
        p.flags = flags | IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        err = io_uring_queue_init_params(entries, &ring->ring_, &p);
        if (err == 0) {
            ring->flags_ = flags;
            ring->needs_enable_ = (flags & IORING_SETUP_R_DISABLED) != 0;
            return ring;
        }
        if (err == -ENOSYS || err == -EPERM || err == -ENOMEM || err == -EMFILE) {
            break;  // flags are not the problem
        }
    }
    return runtime_error(-err, "io_uring setup ({} entries)", entries);
}

Ring::~Ring() {
    io_uring_queue_exit(&ring_);
}

int Ring::enable() noexcept {
    if (!needs_enable_) {
        return 0;
    }
    needs_enable_ = false;
    // liburing 2.3 declares io_uring_enable_rings() but its shared library
    // does not export it, so register directly.
    long r =
        syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
    return r < 0 ? -errno : 0;
}

io_uring_sqe* Ring::get_sqe() noexcept {
    if (refuse_ > 0) {
        --refuse_;
        return nullptr;
    }
    // Seastar's rule: a full SQ is not an error, it means "submit now".
    for (int attempt = 0; attempt < 4; ++attempt) {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) {
            return sqe;
        }
        int r = io_uring_submit(&ring_);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            return nullptr;
        }
    }
    return nullptr;
}

void Ring::cancel(uint64_t user_data) noexcept {
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) {
        cancel_backlog_.push_back(user_data);
        return;
    }
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Cancel, 0}));
}

bool Ring::flush_cancels() noexcept {
    while (!cancel_backlog_.empty()) {
        io_uring_sqe* sqe = get_sqe();
        if (sqe == nullptr) {
            return true;
        }
        io_uring_prep_cancel64(sqe, cancel_backlog_.back(), 0);
        io_uring_sqe_set_data64(sqe, encode(Tag{0, 0, Op::Cancel, 0}));
        cancel_backlog_.pop_back();
    }
    return false;
}

int Ring::submit() noexcept {
    return io_uring_submit(&ring_);
}

int Ring::submit_and_wait_for(std::chrono::nanoseconds timeout) noexcept {
    if (timeout.count() < 0) {
        timeout = std::chrono::nanoseconds{0};
    }
    __kernel_timespec ts{};
    ts.tv_sec = static_cast<long long>(timeout.count() / 1000000000);
    ts.tv_nsec = static_cast<long long>(timeout.count() % 1000000000);
    // The CQE it may point to is left in the CQ for drain().
    io_uring_cqe* cqe = nullptr;
    return io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
}

int Ring::submit_and_get_events() noexcept {
    return io_uring_submit_and_get_events(&ring_);
}

unsigned Ring::drain(Completion* out, unsigned max) noexcept {
    unsigned n = 0;
    unsigned head;
    io_uring_cqe* cqe;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
        if (n == max) {
            break;
        }
        ++seen;
        // On a kernel without IORING_FEAT_EXT_ARG, submit_and_wait_for()
        // makes liburing queue a timeout SQE of its own: not ours to dispatch.
        if (cqe->user_data == LIBURING_UDATA_TIMEOUT) {
            continue;
        }
        out[n++] = Completion{cqe->user_data, cqe->res, cqe->flags};
    }
    io_uring_cq_advance(&ring_, seen);
    return n;
}

}  // namespace sp::io
