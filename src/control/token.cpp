// SPDX-License-Identifier: Apache-2.0
#include "control/token.hpp"

#include <sys/random.h>

#include <cerrno>

#include <openssl/crypto.h>

namespace sp::control {

Result<Token> random_token() {
    Token t{};
    size_t got = 0;
    // getrandom(2) returns at most 256 bytes per call without short reads
    // once the pool is initialized, but a signal can still interrupt the
    // initial wait, so loop.
    while (got < t.size()) {
        const ssize_t n = ::getrandom(t.data() + got, t.size() - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno_error("getrandom");
        }
        got += static_cast<size_t>(n);
    }
    return t;
}

bool token_equal(const Token& a, const Token& b) noexcept {
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace sp::control
