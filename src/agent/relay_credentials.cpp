// SPDX-License-Identifier: Apache-2.0
#include "agent/relay_credentials.hpp"

#include <array>
#include <initializer_list>
#include <memory>
#include <string_view>

#include <openssl/evp.h>

#include "config/keys.hpp"

namespace sp::agent {

namespace {

// SHA-256 over the parts, each prefixed by its length so that two splits of
// the same bytes differ. Only compared, never shown: it tells a reload
// whether a link's key material changed without keeping a second copy.
std::string fingerprint(std::initializer_list<std::string_view> parts) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
        return {};
    }
    for (const auto p : parts) {
        const uint64_t n = p.size();
        EVP_DigestUpdate(ctx.get(), &n, sizeof n);
        EVP_DigestUpdate(ctx.get(), p.data(), p.size());
    }
    EVP_DigestFinal_ex(ctx.get(), md.data(), &len);
    return {reinterpret_cast<const char*>(md.data()), len};
}

}  // namespace

Result<RelayCredentials> load_credentials(const config::RelayEntry& e) {
    if (e.shared_key_mode()) {
        auto keys = config::load_keys(e.key, true);
        if (!keys) {
            return Unexpected(keys.error());
        }
        const auto& k = keys->front();
        const std::string_view secret(reinterpret_cast<const char*>(k.secret.data()),
                                      k.secret.size());
        std::string fp = fingerprint({k.id, secret});
        auto ctx = control::TlsContext::psk_client(k.id, k.secret);
        if (!ctx) {
            return Unexpected(ctx.error());
        }
        return RelayCredentials{std::move(*ctx), k.id, std::move(fp)};
    }
    auto ctx = control::TlsContext::cert_client(e.certificate, e.private_key, e.relay_ca);
    if (!ctx) {
        return Unexpected(ctx.error());
    }
    return RelayCredentials{
        std::move(*ctx),
        {},
        fingerprint({config::file_bytes(e.certificate), config::file_bytes(e.private_key),
                     config::file_bytes(e.relay_ca)})};
}

}  // namespace sp::agent
