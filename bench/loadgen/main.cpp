// SPDX-License-Identifier: Apache-2.0
// sallyport-bench: an iperf-style load generator and sink for bench/run. Every
// byte it moves is verified end to end (see wire.hpp and pattern.hpp); every
// run is bounded in time; targets are loopback unless --allow-remote.
// main() parses the options and hands over to the command's workload
// (workloads.hpp: one file per command).
#include <sys/resource.h>

#include <cstdio>
#include <string_view>

#include "base/result.hpp"
#include "net.hpp"
#include "options.hpp"
#include "signals.hpp"
#include "workloads.hpp"

namespace sp::bench {
namespace {

void raise_nofile() noexcept {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);  // idle needs many fds; best effort
    }
}

[[nodiscard]] Result<int> run(int argc, char** argv) {
    auto o = parse_options(argc, argv);
    if (!o) {
        return tl::unexpected(o.error());
    }
    raise_nofile();
    install_signal_handlers();
    if (o->command == "serve") {
        return run_serve(*o);
    }
    auto addr = resolve(o->address, o->allow_remote);
    if (!addr) {
        return tl::unexpected(addr.error());
    }
    if (o->command == "stream") {
        return run_stream(*o, *addr);
    }
    if (o->command == "rr") {
        return run_rr(*o, *addr);
    }
    if (o->command == "crr") {
        return run_crr(*o, *addr);
    }
    if (o->command == "idle") {
        return run_idle(*o, *addr);
    }
    if (o->command == "burst") {
        return run_burst(*o, *addr);
    }
    return usage_error("unknown command '{}'", o->command);
}

}  // namespace
}  // namespace sp::bench

int main(int argc, char** argv) {
    if (argc >= 2 && (std::string_view(argv[1]) == "-h" || std::string_view(argv[1]) == "--help")) {
        sp::bench::usage(stdout);
        return 0;
    }
    auto r = sp::bench::run(argc, argv);
    if (!r) {
        std::fprintf(stderr, "sallyport-bench: %s\n", r.error().describe().c_str());
        if (r.error().kind == sp::ErrorKind::Usage) {
            sp::bench::usage(stderr);
        }
        return r.error().exit_code();
    }
    return *r;
}
