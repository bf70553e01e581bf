// SPDX-License-Identifier: Apache-2.0
// Issue 16: a reset that arrives while a direction is stalled on a reader
// that does not read must still end the session.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include "harness.hpp"
#include "io/worker.hpp"

using namespace sp;
using namespace sp::io;
using namespace sp::io::test;

namespace {

// Writes to `fd` until the relay stops taking bytes: a send that blocks for
// a whole poll round with the reader stalled. Bounded in rounds and bytes.
uint64_t push_until_blocked(int fd) {
    REQUIRE(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
    std::vector<char> chunk(65536, 'x');
    uint64_t sent = 0;
    for (int round = 0; round < 100000 && sent < (512ULL << 20); ++round) {
        ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<uint64_t>(n);
            continue;
        }
        REQUIRE(errno == EAGAIN);
        pollfd p{fd, POLLOUT, 0};
        if (poll(&p, 1, 300) == 0) {
            return sent;
        }
    }
    FAIL("the relay kept taking bytes from a session whose reader never reads");
    return sent;
}

void reset(UniqueFd& fd) {
    const linger lg{1, 0};
    REQUIRE(setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    fd.reset();
}

}  // namespace

TEST_SUITE("io.backpressure") {
    TEST_CASE("pump: a reset from the writer of a stalled direction ends the session") {
        DataPath path = DataPath::Splice;
        SUBCASE("splice") {
            path = DataPath::Splice;
        }
        SUBCASE("copy") {
            path = DataPath::Copy;
        }
        Harness h(path);
        Link l = make_link(h);
        bool client_resets = true;
        SUBCASE("client pushes and resets") {
            client_resets = true;
        }
        SUBCASE("backend pushes and resets") {
            client_resets = false;
        }
        UniqueFd& writer = client_resets ? l.client : l.backend;
        CHECK(push_until_blocked(writer.get()) > 0);
        CHECK(h.pipes_in_use() + h.buffers_in_use() > 0);  // the relay is stalled too
        reset(writer);

        REQUIRE(h.closes.wait(1, 10s) == 1);
        CHECK(h.closes.records().front().reason ==
              (client_resets ? "reset-by-client" : "reset-by-peer"));
        CHECK(h.sessions() == 0);
        CHECK(h.pipes_in_use() == 0);
        CHECK(h.buffers_in_use() == 0);
    }
}
