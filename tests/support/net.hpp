// SPDX-License-Identifier: Apache-2.0
// Test helper: loopback sockets, deterministic payloads, SHA-256, and small
// in-process backends (echo, hash-then-reply, banner) run on threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.hpp"

namespace sp::test {

/// A port that was free a moment ago on `host` (bind to 0, read, close).
[[nodiscard]] uint16_t free_port(const char* host = "127.0.0.1");
/// Blocking connect with a bound; invalid fd on failure.
[[nodiscard]] UniqueFd connect_to(const char* host, uint16_t port,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(2),
                                  const char* source = nullptr);
/// Retries connect until it succeeds or `timeout` passes.
[[nodiscard]] UniqueFd connect_retry(const char* host, uint16_t port,
                                     std::chrono::milliseconds timeout);
/// True when a connect to host:port is refused (nothing listens).
[[nodiscard]] bool refused(const char* host, uint16_t port);

void set_timeouts(int fd, std::chrono::milliseconds t);
bool send_all(int fd, const void* data, size_t len);
/// Reads until EOF, an error, or `limit` bytes.
std::string recv_all(int fd, size_t limit = SIZE_MAX);
/// Reads exactly n bytes (fewer on EOF or timeout).
std::string recv_n(int fd, size_t n);

class Sha256 final {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(const void* data, size_t len);
    [[nodiscard]] std::string hex();

private:
    void* ctx_;
};
[[nodiscard]] std::string sha256_hex(const std::string& data);

/// `len` bytes of a deterministic pseudo-random stream for `seed`, in
/// chunks: fill(seed, offset, buf) gives the same bytes for the same offset.
void fill_pattern(uint64_t seed, uint64_t offset, char* buf, size_t len);

/// A backend on 127.0.0.1 (or `host`) served by a thread per connection.
class TestServer final {
public:
    enum class Mode {
        Echo,       // echoes everything, half-closes after the client does
        HashReply,  // reads to EOF, then replies with the hex SHA-256 and closes
        Banner,     // sends "BANNER <n>\r\n" first, then echoes
        Source,     // reads an 8-byte big-endian length, sends that many pattern bytes
        Hold,       // accepts and reads, never answers (closes on client EOF)
    };
    /// `port` 0: one the kernel picks.
    TestServer(Mode mode, const char* host = "127.0.0.1", uint16_t port = 0);
    ~TestServer();
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;
    [[nodiscard]] uint16_t port() const { return port_; }
    [[nodiscard]] int accepted() const { return accepted_.load(); }
    [[nodiscard]] int closed() const { return closed_.load(); }

private:
    void serve(UniqueFd c);
    Mode mode_;
    UniqueFd listener_;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::atomic<int> closed_{0};
    std::thread acceptor_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::vector<int> live_;  // fds of connections being served
};

}  // namespace sp::test
