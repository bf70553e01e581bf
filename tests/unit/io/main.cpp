// SPDX-License-Identifier: Apache-2.0
// unit-io runner: skip (77) when io_uring is unavailable, then run doctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include <liburing.h>
#include <signal.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>

#include <doctest/doctest.h>

int main(int argc, char** argv) {
    io_uring probe;
    int r = io_uring_queue_init(8, &probe, 0);
    if (r == -ENOSYS || r == -EPERM) {
        std::fprintf(stderr, "io_uring unavailable (%d): skipping\n", r);
        return 77;
    }
    if (r == 0) {
        io_uring_queue_exit(&probe);
    }
    // Tests hold thousands of loopback sockets; a peer that vanished must
    // surface as EPIPE in the test's own sends, not kill the runner.
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
