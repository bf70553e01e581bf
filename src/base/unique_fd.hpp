// SPDX-License-Identifier: Apache-2.0
// UniqueFd: sole owner of one file descriptor. Every fd sallyport opens lives
// in one, so each is closed exactly once, including on error paths.
#pragma once

#include <utility>

namespace sp {

class UniqueFd final {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    ~UniqueFd() { reset(); }

    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) {
            reset(other.release());
        }
        return *this;
    }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }

    /// Gives up ownership; the caller must close the returned fd.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

    /// Closes the held fd (if any) and takes ownership of `fd`. A close error
    /// is ignored: after close(2) the fd is gone whatever it returned, and a
    /// retry could close an fd another thread just opened.
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

}  // namespace sp
