// SPDX-License-Identifier: Apache-2.0
// unit-relay runner: the shard tests need io_uring; where the kernel or a
// seccomp filter refuses it they are left out and the pure tests still run.
#define DOCTEST_CONFIG_IMPLEMENT
#include <liburing.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>

#include <doctest/doctest.h>

#include "base/event.hpp"

int main(int argc, char** argv) {
    io_uring probe;
    const int r = io_uring_queue_init(8, &probe, 0);
    doctest::Context ctx(argc, argv);
    if (r == -ENOSYS || r == -EPERM) {
        std::fprintf(stderr, "io_uring unavailable (%d): skipping relay.shard\n", r);
        ctx.addFilter("test-suite-exclude", "relay.shard");
    } else if (r == 0) {
        io_uring_queue_exit(&probe);
    }
    signal(SIGPIPE, SIG_IGN);
    // The shards log every session; only errors belong in a test's output.
    sp::log::configure("unit-relay", sp::log::Target::Stderr, sp::log::Level::Error);
    return ctx.run();
}
