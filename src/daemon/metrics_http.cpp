// SPDX-License-Identifier: Apache-2.0
#include "daemon/metrics_http.hpp"

#include <fcntl.h>
#include <microhttpd.h>

#include <cstring>
#include <string_view>

#include "daemon/upgrade.hpp"
#include "io/net.hpp"
#include "obs/prometheus.hpp"

namespace sp::daemon {

namespace {

MHD_Result respond(MHD_Connection* connection, unsigned status, std::string_view body,
                   std::string_view content_type, const char* allow = nullptr) {
    MHD_Response* r = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                      MHD_RESPMEM_MUST_COPY);
    if (r == nullptr) {
        return MHD_NO;
    }
    (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                  std::string(content_type).c_str());
    if (allow != nullptr) {
        (void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    }
    const MHD_Result q = MHD_queue_response(connection, status, r);
    MHD_destroy_response(r);
    return q;
}

MHD_Result on_request(void* cls, MHD_Connection* connection, const char* url, const char* method,
                      const char* /*version*/, const char* /*upload_data*/,
                      size_t* upload_data_size, void** /*con_cls*/) {
    auto* self = static_cast<MetricsHttp*>(cls);
    // Answered on the first call, before any body: nothing here wants one,
    // and MHD closes the connection after a response that skipped it.
    *upload_data_size = 0;
    constexpr std::string_view kText = "text/plain; charset=utf-8";
    if (std::strcmp(url, "/metrics") != 0) {
        return respond(connection, MHD_HTTP_NOT_FOUND, "not found: only /metrics is served\n",
                       kText);
    }
    if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
        return respond(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET\n",
                       kText, MHD_HTTP_METHOD_GET);
    }
    auto text = self->scrape_blocking();
    if (!text) {
        return respond(connection, MHD_HTTP_SERVICE_UNAVAILABLE,
                       "the daemon did not produce its metrics in time\n", kText);
    }
    return respond(connection, MHD_HTTP_OK, *text, obs::kContentType);
}

}  // namespace

void MetricsHttp::StopServer::operator()(MHD_Daemon* d) const noexcept {
    MHD_stop_daemon(d);
}

MetricsHttp::MetricsHttp(Private /*unused*/, Post post, Scrape scrape, Limits limits)
    : post_(std::move(post)),
      scrape_(std::move(scrape)),
      limits_(limits),
      waiters_(std::make_shared<Waiters>()) {}

Result<std::unique_ptr<MetricsHttp>> MetricsHttp::start(const SocketAddress& addr, Post post,
                                                        Scrape scrape, Limits limits,
                                                        UniqueFd inherited) {
    auto self =
        std::make_unique<MetricsHttp>(Private{}, std::move(post), std::move(scrape), limits);
    auto fd = inherited ? Result<UniqueFd>(std::move(inherited)) : io::listen_tcp(addr, false, 16);
    if (!fd) {
        return Unexpected(fd.error());
    }
    const auto bound = io::local_address(fd->get());
    self->address_ = bound ? *bound : addr;
    // Thread per connection, few connections: a scrape waits for the control
    // thread, and one slow client must not hold up the next scrape.
    MHD_Daemon* d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, nullptr, nullptr,
        &on_request, self.get(), MHD_OPTION_LISTEN_SOCKET, fd->get(), MHD_OPTION_CONNECTION_LIMIT,
        limits.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, limits.connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(32 * 1024), MHD_OPTION_END);
    if (d == nullptr) {
        return runtime_error(0, "metrics_listen {}: the HTTP server did not start",
                             addr.to_string());
    }
    self->listen_fd_ = fd->release();  // MHD_stop_daemon closes it
    self->mhd_.reset(d);
    return self;
}

Result<UniqueFd> MetricsHttp::hand_over() const {
    return dup_socket(listen_fd_, fmt::format("metrics_listen {}", address_.to_string()));
}

MetricsHttp::~MetricsHttp() {
    {
        const std::lock_guard lock(waiters_->mu);
        waiters_->closing = true;
    }
    waiters_->cv.notify_all();
    mhd_.reset();
}

std::optional<std::string> MetricsHttp::scrape_blocking() {
    auto answer = std::make_shared<Answer>();
    post_([scrape = scrape_, answer, w = waiters_] {
        scrape([answer, w](std::string text) {
            {
                const std::lock_guard lock(w->mu);
                answer->done = true;
                answer->text = std::move(text);
            }
            w->cv.notify_all();
        });
    });
    std::unique_lock lock(waiters_->mu);
    waiters_->cv.wait_for(lock, limits_.scrape_timeout,
                          [&] { return answer->done || waiters_->closing; });
    if (!answer->done) {
        return std::nullopt;
    }
    return std::move(answer->text);
}

}  // namespace sp::daemon
