// SPDX-License-Identifier: Apache-2.0
#include "relay/name_resolver.hpp"

#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

namespace sp::relay {

// Shared by the NameResolver and its threads: a thread may outlive the
// resolver while a lookup is stuck in DNS, so neither owns the other.
struct NameResolver::State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<uint64_t, std::string>> queue;  // guarded by mu
    bool stopped = false;                                // guarded by mu
    Deliver deliver;  // called with mu held, so ~NameResolver waits for it
};

namespace {

NameResolver::Answer lookup(uint64_t id, const std::string& host) {
    NameResolver::Answer a;
    a.id = id;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* res = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || res == nullptr) {
        a.error = rc != 0 ? ::gai_strerror(rc) : "no address";
        return a;
    }
    for (const addrinfo* p = res; p != nullptr; p = p->ai_next) {
        if (auto addr = SocketAddress::from_sockaddr(p->ai_addr, p->ai_addrlen)) {
            a.ips.push_back(addr->ip());
        }
    }
    ::freeaddrinfo(res);
    if (a.ips.empty()) {
        a.error = "no IPv4 or IPv6 address";
    }
    return a;
}

void run(const std::shared_ptr<NameResolver::State>& s) {
    pthread_setname_np(pthread_self(), "sp-resolver");
    std::unique_lock<std::mutex> lock(s->mu);
    for (;;) {
        s->cv.wait(lock, [&] { return s->stopped || !s->queue.empty(); });
        if (s->stopped) {
            return;
        }
        auto [id, host] = std::move(s->queue.front());
        s->queue.pop_front();
        lock.unlock();
        NameResolver::Answer a = lookup(id, host);
        lock.lock();
        if (s->stopped) {
            return;
        }
        s->deliver(std::move(a));
    }
}

}  // namespace

Result<std::unique_ptr<NameResolver>> NameResolver::create(Deliver deliver) {
    auto state = std::make_shared<State>();
    state->deliver = std::move(deliver);
    auto r = std::make_unique<NameResolver>(Private{}, state);
    for (unsigned i = 0; i < kThreads; ++i) {
        try {
            // Detached: a lookup can take as long as DNS timeouts, and a
            // stopping relay must not wait for it. Each thread holds the
            // state alive.
            std::thread([state] { run(state); }).detach();
        } catch (const std::system_error& e) {
            // ~NameResolver stops the threads already started.
            return runtime_error(e.code().value(), "cannot start a resolver thread: {}", e.what());
        }
    }
    return r;
}

NameResolver::~NameResolver() {
    {
        std::lock_guard<std::mutex> lock(state_->mu);
        state_->stopped = true;
        state_->queue.clear();
    }
    state_->cv.notify_all();
}

bool NameResolver::request(uint64_t id, std::string host) {
    {
        std::lock_guard<std::mutex> lock(state_->mu);
        if (state_->stopped || state_->queue.size() >= kMaxQueued) {
            return false;
        }
        state_->queue.emplace_back(id, std::move(host));
    }
    state_->cv.notify_one();
    return true;
}

}  // namespace sp::relay
