// SPDX-License-Identifier: Apache-2.0
#include "base/signals.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace sp {

Result<UniqueFd> block_signals_to_fd(std::initializer_list<int> signals) {
    sigset_t set;
    sigemptyset(&set);
    for (const int s : signals) {
        sigaddset(&set, s);
    }
    if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
        return errno_error("cannot block signals");
    }
    (void)::signal(SIGPIPE, SIG_IGN);  // see header
    const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        return errno_error("signalfd");
    }
    return UniqueFd(fd);
}

int read_signal(int signal_fd) noexcept {
    signalfd_siginfo info{};
    const ssize_t n = ::read(signal_fd, &info, sizeof info);
    if (n != static_cast<ssize_t>(sizeof info)) {
        return 0;
    }
    return static_cast<int>(info.ssi_signo);
}

Result<unsigned long> raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return errno_error("getrlimit(RLIMIT_NOFILE)");
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            return errno_error("setrlimit(RLIMIT_NOFILE)");
        }
    }
    return static_cast<unsigned long>(rl.rlim_cur);
}

}  // namespace sp
