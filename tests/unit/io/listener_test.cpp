// SPDX-License-Identifier: Apache-2.0
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include <doctest/doctest.h>

#include "harness.hpp"
#include "io/net.hpp"
#include "io/worker.hpp"

using namespace sp;
using namespace sp::io;
using namespace sp::io::test;

namespace {

// What a relay does on accept: dial the backend without blocking, wait for
// the connect on the ring, then splice the two together.
void connect_and_splice(Worker& w, UniqueFd client, SocketAddress backend, CloseLog* log) {
    auto peer = std::make_shared<UniqueFd>();
    int r = connect_tcp_nonblocking(backend, *peer);
    REQUIRE((r == 0 || r == -EINPROGRESS));
    auto cl = std::make_shared<UniqueFd>(std::move(client));
    (void)w.wait_fd(
        peer->get(), POLLOUT, std::chrono::milliseconds(5000),
        [peer, cl, log](Worker& wk, int res) {
            if (res > 0 && socket_error(peer->get()) == 0) {
                (void)wk.start_session(
                    std::move(*cl), std::move(*peer),
                    [log](Worker&, SessionId id, const SessionEnd& e) { log->add(id, e); }, 0);
            }
        });
}

UniqueFd connect_blocking(const SocketAddress& to) {
    sockaddr_storage ss;
    socklen_t len = to.to_sockaddr(ss);
    UniqueFd fd(socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        return UniqueFd();
    }
    return fd;
}

}  // namespace

TEST_SUITE("io.listener") {
    TEST_CASE("listener: multishot accept serves many clients and removal spares sessions") {
        Harness h(DataPath::Splice);
        auto backend_l = listen_tcp(SocketAddress(IpAddress::v4(0x7f000001), 0), false, 512);
        REQUIRE(backend_l);
        auto backend_addr = *local_address(backend_l->get());
        // The backend listener is blocking for the test's accept loop.
        int fl = fcntl(backend_l->get(), F_GETFL);
        REQUIRE(fcntl(backend_l->get(), F_SETFL, fl & ~O_NONBLOCK) == 0);

        auto front = listen_tcp(SocketAddress(IpAddress::v4(0x7f000001), 0), true, 512);
        REQUIRE(front);
        auto front_addr = *local_address(front->get());
        auto lfd = std::make_shared<UniqueFd>(std::move(*front));
        std::atomic<int> accepted{0};
        CloseLog* log = &h.closes;
        uint64_t lid = h.call([&, lfd, log, backend_addr](Worker& w) {
            return w.add_listener(
                std::move(*lfd),
                [&, log, backend_addr](Worker& wk, UniqueFd c, const SocketAddress& peer,
                                       const SocketAddress& local) {
                    CHECK(peer.ip().to_string() == "127.0.0.1");
                    CHECK(local.port() != 0);
                    ++accepted;
                    connect_and_splice(wk, std::move(c), backend_addr, log);
                },
                [](Worker&, int, bool) {});
        });

        constexpr int kClients = 64;
        std::vector<UniqueFd> clients;
        for (int i = 0; i < kClients; ++i) {
            clients.push_back(connect_blocking(front_addr));
            REQUIRE(clients.back().valid());
            uint32_t tag = htonl(uint32_t(i));
            REQUIRE(send(clients.back().get(), &tag, 4, 0) == 4);
        }
        // The backend learns which client each connection is from its tag.
        std::vector<UniqueFd> backends(kClients);
        for (int i = 0; i < kClients; ++i) {
            pollfd p{backend_l->get(), POLLIN, 0};
            REQUIRE(poll(&p, 1, 5000) == 1);
            UniqueFd b(accept4(backend_l->get(), nullptr, nullptr, SOCK_CLOEXEC));
            REQUIRE(b.valid());
            uint32_t tag = 0;
            pollfd q{b.get(), POLLIN, 0};
            REQUIRE(poll(&q, 1, 5000) == 1);
            REQUIRE(recv(b.get(), &tag, 4, MSG_WAITALL) == 4);
            uint32_t idx = ntohl(tag);
            REQUIRE(idx < kClients);
            backends[idx] = std::move(b);
        }
        CHECK(accepted.load() == kClients);
        CHECK(h.sessions() == kClients);

        h.call([lid](Worker& w) { w.remove_listener(lid); });
        CHECK(h.call([](Worker& w) { return w.listener_count(); }) == 0);
        CHECK_FALSE(connect_blocking(front_addr).valid());  // nothing listens any more

        std::vector<std::unique_ptr<Endpoint>> eps;
        std::vector<Endpoint*> all;
        for (int i = 0; i < kClients; ++i) {
            eps.push_back(std::make_unique<Endpoint>(clients[i].get(), 20000 + i, 100 + i));
            eps.push_back(std::make_unique<Endpoint>(backends[i].get(), 30000 + i, 300 + i));
        }
        all.reserve(eps.size());
        for (auto& e : eps) {
            all.push_back(e.get());
        }
        REQUIRE(drive(all, 20s));
        for (std::size_t i = 0; i < std::size_t{kClients}; ++i) {
            CHECK(eps[2 * i + 1]->recv_hash == eps[2 * i]->send_hash);
            CHECK(eps[2 * i]->recv_hash == eps[2 * i + 1]->send_hash);
        }
        REQUIRE(h.closes.wait(kClients, 5s) == kClients);
    }
}
