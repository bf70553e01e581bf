// SPDX-License-Identifier: Apache-2.0
#include "outbound/reply.hpp"

#include <cerrno>

namespace sp::outbound {

std::string_view to_string(Failure f) noexcept {
    switch (f) {
        case Failure::NotAllowed:
            return "not-allowed";
        case Failure::ResolveFailed:
            return "resolve-failed";
        case Failure::ConnectFailed:
            return "connect-failed";
        case Failure::Timeout:
            return "timeout";
        case Failure::Limit:
            return "limit";
        case Failure::Disabled:
            return "disabled";
        case Failure::NoRelay:
            return "no-relay";
        case Failure::BadRequest:
            return "bad-request";
    }
    return "bad-request";
}

Failure failure_of(control::OutboundStatus s) noexcept {
    using S = control::OutboundStatus;
    switch (s) {
        case S::Denied:
            return Failure::NotAllowed;
        case S::ResolveFailed:
            return Failure::ResolveFailed;
        case S::ConnectFailed:
            return Failure::ConnectFailed;
        case S::Timeout:
            return Failure::Timeout;
        case S::Disabled:
            return Failure::Disabled;
        case S::Limit:
            return Failure::Limit;
        case S::Ok:
            break;
    }
    return Failure::NoRelay;
}

uint8_t socks_code(Failure f, int err) noexcept {
    switch (f) {
        case Failure::NotAllowed:
        case Failure::Disabled:
            return socks::kNotAllowed;
        case Failure::ResolveFailed:
        case Failure::Timeout:
            return socks::kHostUnreachable;
        case Failure::ConnectFailed:
            switch (err < 0 ? -err : err) {
                case ECONNREFUSED:
                    return socks::kConnectionRefused;
                case ENETUNREACH:
                    return socks::kNetworkUnreachable;
                case EHOSTUNREACH:
                case ETIMEDOUT:
                    return socks::kHostUnreachable;
                default:
                    return socks::kGeneralFailure;
            }
        case Failure::Limit:
        case Failure::NoRelay:
        case Failure::BadRequest:
            return socks::kGeneralFailure;
    }
    return socks::kGeneralFailure;
}

std::string_view http_response(Failure f) noexcept {
    switch (f) {
        case Failure::NotAllowed:
        case Failure::Disabled:
            return "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        case Failure::ResolveFailed:
        case Failure::ConnectFailed:
            return "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        case Failure::Timeout:
            return "HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\nConnection: "
                   "close\r\n\r\n";
        case Failure::Limit:
        case Failure::NoRelay:
            return "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: "
                   "close\r\n\r\n";
        case Failure::BadRequest:
            break;
    }
    return "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
}

std::string_view http_established() noexcept {
    return "HTTP/1.1 200 Connection established\r\n\r\n";
}

}  // namespace sp::outbound
