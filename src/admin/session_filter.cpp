// SPDX-License-Identifier: Apache-2.0
#include "admin/session_filter.hpp"

#include <utility>

#include <fmt/format.h>

namespace sp::admin {

bool SessionFilter::matches(std::string_view service_name,
                            const IpAddress& client_ip) const noexcept {
    if (service && *service != service_name) {
        return false;
    }
    return !client || client->contains(client_ip);
}

Outcome<SessionFilter> parse_session_filter(const Args& args) {
    if (auto r = args.only({"service", "client"}); !r) {
        return tl::unexpected(r.error());
    }
    SessionFilter f;
    auto service = args.string("service");
    if (!service) {
        return tl::unexpected(service.error());
    }
    f.service = std::move(*service);
    auto client = args.string("client");
    if (!client) {
        return tl::unexpected(client.error());
    }
    if (*client) {
        auto cidr = Cidr::parse(**client);
        if (!cidr) {
            return fail(ErrorCode::BadArgs,
                        fmt::format("argument \"client\": {}", cidr.error().message));
        }
        f.client = *cidr;
    }
    return f;
}

}  // namespace sp::admin
