// SPDX-License-Identifier: Apache-2.0
#include "io/classify.hpp"

#include <cerrno>

namespace sp::io {

namespace {

bool is_resource(int err) noexcept {
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

// Our own mistakes on a socket call: a closed or wrong fd, a bad buffer,
// flags the socket does not take. Never caused by the remote end.
bool is_misuse(int err) noexcept {
    return err == EBADF || err == EFAULT || err == EINVAL || err == ENOTSOCK || err == EOPNOTSUPP ||
           err == ESPIPE;
}

// accept(2): "Linux accept() passes already-pending network errors on the
// new socket as an error code from accept()" (ENETDOWN, EPROTO, ENOPROTOOPT,
// EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH), plus
// ECONNABORTED (the client gave up in the queue) and EPERM (a firewall
// rule). All of them concern one client: the next one is fine.
Fault accept_fault(int err) noexcept {
    if (err == EINTR || err == EAGAIN || err == ECANCELED) {
        return Fault::Retry;
    }
    if (is_resource(err)) {
        return Fault::Resource;
    }
    // The listener itself is broken (closed, not listening, not a socket):
    // re-arming would fail again at once.
    if (err == EBADF || err == EINVAL || err == ENOTSOCK || err == EFAULT) {
        return Fault::Bug;
    }
    if (err == ECONNABORTED || err == EPROTO || err == EPERM || err == ENETDOWN ||
        err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH ||
        err == EOPNOTSUPP || err == ENETUNREACH || err == ETIMEDOUT || err == ECONNRESET) {
        return Fault::Peer;
    }
    // Unknown: pause and report rather than guess, so it cannot spin.
    return Fault::Resource;
}

// A poll reports the socket's state in its mask; res < 0 means the request
// itself failed.
Fault poll_fault(int err) noexcept {
    if (err == EINTR || err == EAGAIN || err == ECANCELED) {
        return Fault::Retry;
    }
    if (is_resource(err)) {
        return Fault::Resource;
    }
    return Fault::Bug;
}

// RECV/SEND SQEs and the recv/send/splice syscalls on a connected socket.
Fault io_fault(int err) noexcept {
    if (err == EINTR || err == EAGAIN || err == ECANCELED) {
        return Fault::Retry;
    }
    if (is_resource(err)) {
        return Fault::Resource;
    }
    if (is_misuse(err)) {
        return Fault::Bug;
    }
    return Fault::Peer;
}

}  // namespace

Fault classify(Op op, int res) noexcept {
    const int err = -res;
    switch (op) {
        case Op::Accept:
            return accept_fault(err);
        case Op::PollIn:
        case Op::PollOut:
        case Op::Watch:
        case Op::Inbox:
        case Op::WaitFd:
            return poll_fault(err);
        case Op::SpliceIn:
            // HAProxy raw_sock_to_pipe: EINVAL and ENOSYS mean this socket
            // type (or kernel) cannot splice, EBADF that the fd cannot be a
            // splice source. Nothing was moved yet, so recv/send can take
            // over without losing a byte.
            if (err == EINVAL || err == ENOSYS || err == EBADF) {
                return Fault::Unsupported;
            }
            return io_fault(err);
        case Op::SpliceOut:
            // The pipe holds bytes already read from the source: no fallback
            // can take them over, and a socket that spliced in splices out.
            if (err == ENOSYS) {
                return Fault::Bug;
            }
            return io_fault(err);
        case Op::Recv:
        case Op::Send:
        case Op::RecvCall:
        case Op::SendCall:
            return io_fault(err);
        case Op::None:
        case Op::Cancel:
            break;
    }
    return Fault::Bug;
}

}  // namespace sp::io
