// SPDX-License-Identifier: Apache-2.0
#include "agent/resolver.hpp"

#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

namespace sp::agent {

// Shared by the Resolver and its thread: the thread may outlive the
// Resolver while a lookup is stuck in DNS, so neither owns the other.
struct Resolver::State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> queue;  // guarded by mu
    std::set<std::string> queued;   // guarded by mu; what `queue` holds
    bool stopped = false;           // guarded by mu
    Deliver deliver;                // called with mu held, so ~Resolver waits for it
};

namespace {

Resolver::Answer lookup(const std::string& host) {
    Resolver::Answer a;
    a.host = host;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || res == nullptr) {
        a.error = rc != 0 ? ::gai_strerror(rc) : "no address";
        return a;
    }
    if (auto addr = SocketAddress::from_sockaddr(res->ai_addr, res->ai_addrlen)) {
        a.ip = addr->ip();
    } else {
        a.error = "unsupported address family";
    }
    ::freeaddrinfo(res);
    return a;
}

void run(const std::shared_ptr<Resolver::State>& s) {
    pthread_setname_np(pthread_self(), "sp-resolver");
    std::unique_lock<std::mutex> lock(s->mu);
    for (;;) {
        s->cv.wait(lock, [&] { return s->stopped || !s->queue.empty(); });
        if (s->stopped) {
            return;
        }
        std::string host = std::move(s->queue.front());
        s->queue.pop_front();
        s->queued.erase(host);
        lock.unlock();
        Resolver::Answer a = lookup(host);
        lock.lock();
        if (s->stopped) {
            return;
        }
        s->deliver(std::move(a));
    }
}

}  // namespace

Result<std::unique_ptr<Resolver>> Resolver::create(Deliver deliver) {
    auto state = std::make_shared<State>();
    state->deliver = std::move(deliver);
    try {
        // Detached: a lookup can take as long as DNS timeouts, and a stopping
        // agent must not wait for it. The thread holds the state alive.
        std::thread([state] { run(state); }).detach();
    } catch (const std::system_error& e) {
        return runtime_error(e.code().value(), "cannot start the resolver thread: {}", e.what());
    }
    return std::make_unique<Resolver>(Private{}, std::move(state));
}

Resolver::~Resolver() {
    {
        std::lock_guard<std::mutex> lock(state_->mu);
        state_->stopped = true;
        state_->queue.clear();
        state_->queued.clear();
    }
    state_->cv.notify_all();
}

void Resolver::request(const std::string& host) {
    {
        std::lock_guard<std::mutex> lock(state_->mu);
        if (state_->stopped || !state_->queued.insert(host).second) {
            return;
        }
        state_->queue.push_back(host);
    }
    state_->cv.notify_one();
}

}  // namespace sp::agent
