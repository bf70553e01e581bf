// SPDX-License-Identifier: Apache-2.0
#include "io/classify.hpp"

#include <cerrno>
#include <string_view>

#include <doctest/doctest.h>

using namespace sp::io;

namespace {

std::string_view name(Fault f) {
    switch (f) {
        case Fault::Retry:
            return "retry";
        case Fault::Peer:
            return "peer";
        case Fault::Resource:
            return "resource";
        case Fault::Unsupported:
            return "unsupported";
        case Fault::Bug:
            return "bug";
    }
    return "?";
}

struct Row {
    Op op;
    int res;
    Fault want;
};

// The table of STYLE section 3.1, one row per decision the data plane makes.
constexpr Row kRows[] = {
    // accept: one client's trouble is not the listener's
    {Op::Accept, -ECONNABORTED, Fault::Peer},
    {Op::Accept, -EPROTO, Fault::Peer},
    {Op::Accept, -EPERM, Fault::Peer},
    {Op::Accept, -ENETUNREACH, Fault::Peer},
    {Op::Accept, -EMFILE, Fault::Resource},
    {Op::Accept, -ENFILE, Fault::Resource},
    {Op::Accept, -ENOBUFS, Fault::Resource},
    {Op::Accept, -ENOMEM, Fault::Resource},
    {Op::Accept, -EINTR, Fault::Retry},
    {Op::Accept, -ECANCELED, Fault::Retry},
    {Op::Accept, -EBADF, Fault::Bug},
    {Op::Accept, -EINVAL, Fault::Bug},
    {Op::Accept, -ENOTSOCK, Fault::Bug},
    {Op::Accept, -EIO, Fault::Resource},  // unknown: paused and reported, never spun on
    // polls report the network in their mask, so res < 0 is ours or memory
    {Op::PollIn, -ECANCELED, Fault::Retry},
    {Op::PollOut, -ENOMEM, Fault::Resource},
    {Op::Watch, -EBADF, Fault::Bug},
    {Op::PollIn, -EINVAL, Fault::Bug},
    {Op::Inbox, -EINTR, Fault::Retry},
    // socket I/O, SQE or syscall alike
    {Op::Recv, -ECONNRESET, Fault::Peer},
    {Op::Recv, -ETIMEDOUT, Fault::Peer},
    {Op::Recv, -ENOBUFS, Fault::Resource},
    {Op::Recv, -EINTR, Fault::Retry},
    {Op::Recv, -EFAULT, Fault::Bug},
    {Op::Send, -EPIPE, Fault::Peer},
    {Op::Send, -ENOTCONN, Fault::Peer},
    {Op::Send, -ENOMEM, Fault::Resource},
    {Op::RecvCall, -EHOSTUNREACH, Fault::Peer},
    {Op::RecvCall, -EIO, Fault::Peer},  // unknown: the connection is gone
    {Op::SendCall, -EBADF, Fault::Bug},
    // splice: only the source side may fall back
    {Op::SpliceIn, -EINVAL, Fault::Unsupported},
    {Op::SpliceIn, -ENOSYS, Fault::Unsupported},
    {Op::SpliceIn, -EBADF, Fault::Unsupported},
    {Op::SpliceIn, -EINTR, Fault::Retry},
    {Op::SpliceIn, -ECONNRESET, Fault::Peer},
    {Op::SpliceIn, -ENOMEM, Fault::Resource},
    {Op::SpliceOut, -EINVAL, Fault::Bug},
    {Op::SpliceOut, -ENOSYS, Fault::Bug},
    {Op::SpliceOut, -EPIPE, Fault::Peer},
    {Op::SpliceOut, -EINTR, Fault::Retry},
    // never classified: tags we do not build
    {Op::None, -EIO, Fault::Bug},
    {Op::Cancel, -ENOENT, Fault::Bug},
};

}  // namespace

TEST_SUITE("io.classify") {
    TEST_CASE("classify: every row of the table gets its answer") {
        for (const Row& r : kRows) {
            CAPTURE(static_cast<int>(r.op));
            CAPTURE(r.res);
            CHECK(name(classify(r.op, r.res)) == name(r.want));
        }
    }
}
