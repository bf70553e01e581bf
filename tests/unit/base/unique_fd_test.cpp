// SPDX-License-Identifier: Apache-2.0
#include "base/unique_fd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

#include <doctest/doctest.h>

namespace {
bool is_open(int fd) {
    return ::fcntl(fd, F_GETFD) != -1;
}
}  // namespace

TEST_SUITE("base.unique_fd") {
    TEST_CASE("unique_fd: closes on destruction and on reset") {
        int raw = -1;
        {
            sp::UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
            raw = fd.get();
            REQUIRE(is_open(raw));
        }
        CHECK_FALSE(is_open(raw));
        sp::UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        raw = fd.get();
        fd.reset();
        CHECK_FALSE(is_open(raw));
        CHECK_FALSE(fd.valid());
    }

    TEST_CASE("unique_fd: move transfers ownership exactly once") {
        sp::UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        const int raw = a.get();
        sp::UniqueFd b(std::move(a));
        // The moved-from state is what this checks.
        // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
        CHECK_FALSE(a.valid());
        CHECK(b.get() == raw);
        sp::UniqueFd c;
        c = std::move(b);
        CHECK(c.get() == raw);
        CHECK(is_open(raw));
        const int released = c.release();
        CHECK(released == raw);
        CHECK(is_open(raw));
        ::close(released);
    }
}
