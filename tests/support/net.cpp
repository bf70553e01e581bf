// SPDX-License-Identifier: Apache-2.0
#include "net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <openssl/evp.h>

namespace sp::test {

namespace {

sockaddr_storage make_addr(const char* host, uint16_t port, socklen_t& len) {
    sockaddr_storage ss{};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof(sockaddr_in);
    } else {
        ::inet_pton(AF_INET6, host, &v6->sin6_addr);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof(sockaddr_in6);
    }
    return ss;
}

}  // namespace

uint16_t free_port(const char* host) {
    socklen_t len = 0;
    auto ss = make_addr(host, 0, len);
    UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        return 0;
    }
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

UniqueFd connect_to(const char* host, uint16_t port, std::chrono::milliseconds timeout,
                    const char* source) {
    socklen_t len = 0;
    auto ss = make_addr(host, port, len);
    UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (source != nullptr) {
        socklen_t slen = 0;
        auto src = make_addr(source, 0, slen);
        if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&src), slen) != 0) {
            return {};
        }
    }
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        if (errno != EINPROGRESS) {
            return {};
        }
        pollfd p{fd.get(), POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
            return {};
        }
        int err = 0;
        socklen_t el = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            return {};
        }
    }
    // Tests read and write with plain blocking calls bounded by SO_RCVTIMEO.
    ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
    set_timeouts(fd.get(), std::chrono::seconds(30));
    return fd;
}

UniqueFd connect_retry(const char* host, uint16_t port, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (int i = 0; i < 100000; ++i) {
        if (auto fd = connect_to(host, port, std::chrono::milliseconds(500)); fd) {
            return fd;
        }
        if (std::chrono::steady_clock::now() >= until) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return {};
}

bool refused(const char* host, uint16_t port) {
    socklen_t len = 0;
    auto ss = make_addr(host, port, len);
    UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno == ECONNREFUSED;
}

void set_timeouts(int fd, std::chrono::milliseconds t) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(t.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool send_all(int fd, const void* data, size_t len) {
    const char* p = static_cast<const char*>(data);
    while (len > 0) {
        const ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        p += n;
        len -= static_cast<size_t>(n);
    }
    return true;
}

std::string recv_all(int fd, size_t limit) {
    std::string out;
    char buf[65536];
    while (out.size() < limit) {
        const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, limit - out.size()), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

std::string recv_n(int fd, size_t n) {
    return recv_all(fd, n);
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}

Sha256::~Sha256() {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
}

void Sha256::update(const void* data, size_t len) {
    EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, len);
}

std::string Sha256::hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &n);
    std::string out;
    for (unsigned i = 0; i < n; ++i) {
        out += fmt::format("{:02x}", md[i]);
    }
    return out;
}

std::string sha256_hex(const std::string& data) {
    Sha256 h;
    h.update(data.data(), data.size());
    return h.hex();
}

void fill_pattern(uint64_t seed, uint64_t offset, char* buf, size_t len) {
    // splitmix64 over 8-byte words: position-addressable, so any chunking of
    // the stream yields the same bytes.
    for (size_t i = 0; i < len; ++i) {
        const uint64_t word = (offset + i) / 8;
        uint64_t z = seed + word * 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        buf[i] = static_cast<char>(z >> (8 * ((offset + i) % 8)));
    }
}

TestServer::TestServer(Mode mode, const char* host, uint16_t port) : mode_(mode) {
    socklen_t len = 0;
    auto ss = make_addr(host, port, len);
    listener_.reset(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int one = 1;
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
        ::listen(listener_.get(), 1024) != 0) {
        return;
    }
    ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                          : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    acceptor_ = std::thread([this] {
        while (!stop_.load()) {
            pollfd p{listener_.get(), POLLIN, 0};
            if (::poll(&p, 1, 100) != 1) {
                continue;
            }
            UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!c) {
                continue;
            }
            ++accepted_;
            set_timeouts(c.get(), std::chrono::seconds(60));
            {
                const std::lock_guard lock(mu_);
                live_.push_back(c.get());
            }
            workers_.emplace_back([this, fd = std::move(c)]() mutable { serve(std::move(fd)); });
        }
    });
}

TestServer::~TestServer() {
    stop_.store(true);
    if (acceptor_.joinable()) {
        acceptor_.join();
    }
    {
        // Wake workers blocked in recv on connections a test left open.
        const std::lock_guard lock(mu_);
        for (const int fd : live_) {
            ::shutdown(fd, SHUT_RDWR);
        }
    }
    for (auto& t : workers_) {
        if (t.joinable()) {
            t.join();
        }
    }
}

void TestServer::serve(UniqueFd c) {
    const int fd = c.get();
    char buf[65536];
    switch (mode_) {
        case Mode::Banner: {
            const std::string banner = fmt::format("BANNER {}\r\n", accepted_.load());
            send_all(fd, banner.data(), banner.size());
            [[fallthrough]];
        }
        case Mode::Echo: {
            for (;;) {
                const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0 || stop_.load()) {
                    break;
                }
                if (!send_all(fd, buf, static_cast<size_t>(n))) {
                    break;
                }
            }
            ::shutdown(fd, SHUT_WR);
            break;
        }
        case Mode::HashReply: {
            Sha256 h;
            for (;;) {
                const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0 || stop_.load()) {
                    break;
                }
                h.update(buf, static_cast<size_t>(n));
            }
            const std::string reply = h.hex();
            send_all(fd, reply.data(), reply.size());
            break;
        }
        case Mode::Source: {
            const std::string hdr = recv_n(fd, 8);
            if (hdr.size() != 8) {
                break;
            }
            uint64_t want = 0;
            for (const char ch : hdr) {
                want = (want << 8) | static_cast<unsigned char>(ch);
            }
            uint64_t off = 0;
            while (off < want && !stop_.load()) {
                const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof buf, want - off));
                fill_pattern(want, off, buf, n);
                if (!send_all(fd, buf, n)) {
                    break;
                }
                off += n;
            }
            break;
        }
        case Mode::Hold: {
            for (;;) {
                const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0 || stop_.load()) {
                    break;
                }
            }
            break;
        }
    }
    {
        const std::lock_guard lock(mu_);
        std::erase(live_, fd);
    }
    ++closed_;
}

}  // namespace sp::test
