// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <liburing.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "harness.hpp"
#include "io/net.hpp"
#include "io/worker.hpp"

using namespace sp;
using namespace sp::io;
using namespace sp::io::test;

namespace {

// The sanitizers need file descriptors of their own: LLVM 14's UBSan probes
// memory through a pipe the first time it checks a virtual call of a type,
// so with every descriptor taken it reports valid objects as invalid. The
// fd exhaustion test therefore runs in the plain builds only.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

}  // namespace

TEST_SUITE("io.threads") {
    TEST_CASE("threads: idle sessions do not add kernel threads when their count grows 10x") {
        DataPath path = DataPath::Splice;
        SUBCASE("splice") {
            path = DataPath::Splice;
        }
        SUBCASE("copy") {
            path = DataPath::Copy;
        }
        Harness h(path);
        std::vector<Link> links;
        auto open = [&](size_t n) {
            while (links.size() < n) {
                links.push_back(make_link(h));
                // One byte each way, so every socket has been read once.
                Link& l = links.back();
                char b = 'x';
                REQUIRE(send(l.client.get(), &b, 1, 0) == 1);
                REQUIRE(send(l.backend.get(), &b, 1, 0) == 1);
                REQUIRE(recv(l.backend.get(), &b, 1, MSG_WAITALL) == 1);
                REQUIRE(recv(l.client.get(), &b, 1, MSG_WAITALL) == 1);
            }
            REQUIRE(h.sessions() == n);
        };
        open(50);
        const size_t at_50 = thread_count();
        open(500);
        const size_t at_500 = thread_count();
        MESSAGE("threads with 50 idle sessions: " << at_50 << ", with 500: " << at_500);
        bool named = false;
        if (DIR* d = opendir("/proc/self/task")) {
            while (dirent* e = readdir(d)) {
                std::string comm;
                if (FILE* f = std::fopen(
                        ("/proc/self/task/" + std::string(e->d_name) + "/comm").c_str(), "re")) {
                    char buf[32] = {};
                    if (std::fgets(buf, sizeof(buf), f) != nullptr) {
                        comm = buf;
                    }
                    std::fclose(f);
                }
                named = named || comm == "sp-worker-0\n";
            }
            closedir(d);
        }
        CHECK(named);
        CHECK(at_500 <= at_50 + 2);
        CHECK(h.pipes_in_use() == 0);
        CHECK(h.buffers_in_use() == 0);
    }
}

TEST_SUITE("io.threads") {
    // The claim behind a future io_uring RECV copy path: a RECV on an idle
    // socket is poll-armed inside the kernel, not handed to an io-wq worker.
    TEST_CASE("threads: pending io_uring RECVs on idle sockets park no io-wq workers") {
        io_uring ring;
        REQUIRE(io_uring_queue_init(1024, &ring, 0) == 0);
        constexpr int kSockets = 500;
        std::vector<TcpPair> pairs;
        std::vector<std::array<char, 16>> bufs(kSockets);
        const size_t before = thread_count();
        for (int i = 0; i < kSockets; ++i) {
            pairs.push_back(tcp_pair());
            io_uring_sqe* sqe = io_uring_get_sqe(&ring);
            REQUIRE(sqe != nullptr);
            io_uring_prep_recv(sqe, pairs.back().b.get(), bufs[i].data(), bufs[i].size(), 0);
            io_uring_sqe_set_data64(sqe, uint64_t(i));
        }
        REQUIRE(io_uring_submit(&ring) == kSockets);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        const size_t pending = thread_count();
        // Completing one proves the RECVs are really armed.
        REQUIRE(send(pairs[7].a.get(), "y", 1, 0) == 1);
        io_uring_cqe* cqe = nullptr;
        __kernel_timespec ts{5, 0};
        REQUIRE(io_uring_wait_cqe_timeout(&ring, &cqe, &ts) == 0);
        CHECK(cqe->user_data == 7);
        CHECK(cqe->res == 1);
        io_uring_cqe_seen(&ring, cqe);
        io_uring_queue_exit(&ring);  // cancels the rest
        MESSAGE("threads before: " << before << ", with " << kSockets
                                   << " pending RECVs: " << pending);
        CHECK(pending <= before + 2);
    }

    TEST_CASE("threads: fd exhaustion pauses accepting instead of spinning, then recovers" *
              doctest::skip(kSanitized)) {
        Harness h(DataPath::Splice);
        auto front = listen_tcp(SocketAddress(IpAddress::v4(0x7f000001), 0), false, 64);
        REQUIRE(front);
        auto front_addr = *local_address(front->get());
        auto lfd = std::make_shared<UniqueFd>(std::move(*front));
        std::atomic<int> errors{0};
        std::atomic<int> paused_errors{0};
        std::atomic<int> accepted{0};
        UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(client.valid());
        // Fill every free descriptor number below the highest one in use,
        // then cap the table there: the next accept has nowhere to go.
        std::vector<UniqueFd> fillers;
        int highest = 0;
        if (DIR* d = opendir("/proc/self/fd")) {
            while (dirent* e = readdir(d)) {
                highest = std::max(highest, std::atoi(e->d_name));
            }
            closedir(d);
        }
        for (int i = 0; i < 100000; ++i) {
            UniqueFd f(dup(client.get()));
            REQUIRE(f.valid());
            int n = f.get();
            fillers.push_back(std::move(f));
            if (n >= highest + 1) {
                break;
            }
        }
        rlimit old;
        REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
        rlimit low = old;
        low.rlim_cur = static_cast<rlim_t>(fillers.back().get()) + 1;
        REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
        // io_uring reads the limit when the accept is prepared, so arm it now.
        (void)h.call([&, lfd](Worker& w) {
            return w.add_listener(
                std::move(*lfd),
                [&](Worker&, UniqueFd, const SocketAddress&, const SocketAddress&) { ++accepted; },
                [&](Worker&, int err, bool paused) {
                    ++errors;
                    if (paused && (err == -EMFILE || err == -ENFILE)) {
                        ++paused_errors;
                    }
                });
        });

        sockaddr_storage ss;
        socklen_t len = front_addr.to_sockaddr(ss);
        REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        const int errs = errors.load();
        REQUIRE(setrlimit(RLIMIT_NOFILE, &old) == 0);
        fillers.clear();

        MESSAGE("accept errors in 500 ms of EMFILE: " << errs);
        CHECK(paused_errors.load() >= 1);
        CHECK(errs <= 12);  // one per ~100 ms pause, not one per loop turn
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        while (accepted.load() == 0 && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        CHECK(accepted.load() == 1);
    }
}
