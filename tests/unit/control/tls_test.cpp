// SPDX-License-Identifier: Apache-2.0
#include "control/tls.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "control/frame.hpp"

using namespace sp::control;

namespace {

// TlsStream writes with write(2); a peer that closed first must not kill us.
const bool kSigpipeIgnored = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
}();

struct Ends {
    sp::UniqueFd client;
    sp::UniqueFd server;
};

Ends socket_pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    return {sp::UniqueFd(fds[0]), sp::UniqueFd(fds[1])};
}

bool terminal(const TlsResult& r) {
    return r.status == TlsStatus::Done || r.status == TlsStatus::Error;
}

void wait_for(const std::vector<std::pair<const TlsStream*, bool>>& who) {
    std::vector<pollfd> p;
    for (auto [s, active] : who) {
        if (active) {
            p.push_back(
                {s->fd(), static_cast<short>(POLLIN | (s->wants_write() ? POLLOUT : 0)), 0});
        }
    }
    if (!p.empty()) {
        (void)::poll(p.data(), p.size(), 100);
    }
}

struct HandshakeOutcome {
    TlsResult client;
    TlsResult server;
};

// Drives both handshakes; bounded in rounds and (by poll's timeout) in time.
HandshakeOutcome handshake_both(TlsStream& c, TlsStream& s) {
    HandshakeOutcome o{{TlsStatus::WantWrite, 0, TlsFailure::None, {}},
                       {TlsStatus::WantRead, 0, TlsFailure::None, {}}};
    for (int round = 0; round < 200; ++round) {
        if (!terminal(o.client)) {
            o.client = c.handshake();
        }
        if (!terminal(o.server)) {
            o.server = s.handshake();
        }
        if (terminal(o.client) && terminal(o.server)) {
            break;
        }
        wait_for({{&c, !terminal(o.client)}, {&s, !terminal(o.server)}});
    }
    return o;
}

// Sends `data` from `from` to `to` with both loops interleaved; returns what
// arrived (stops at Eof/Error or when everything is there).
std::vector<uint8_t> transfer(TlsStream& from, TlsStream& to, const std::vector<uint8_t>& data) {
    from.queue(data);
    std::vector<uint8_t> got;
    std::vector<uint8_t> buf(16384);
    for (int round = 0; round < 2000 && got.size() < data.size(); ++round) {
        const auto f = from.flush();
        if (f.status == TlsStatus::Error) {
            break;
        }
        bool progress = f.status == TlsStatus::Done;
        for (;;) {
            const auto r = to.read(buf);
            if (r.status != TlsStatus::Ok) {
                if (r.status == TlsStatus::Eof || r.status == TlsStatus::Error) {
                    return got;
                }
                break;
            }
            got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(r.bytes));
            progress = true;
        }
        if (!progress) {
            wait_for({{&from, true}, {&to, true}});
        }
    }
    return got;
}

std::vector<uint8_t> secret_of(uint8_t seed) {
    return std::vector<uint8_t>(32, seed);
}

KeyLookup table(std::map<std::string, std::vector<uint8_t>> keys) {
    return [keys = std::move(keys)](std::string_view id) -> std::optional<std::vector<uint8_t>> {
        auto it = keys.find(std::string(id));
        if (it == keys.end()) {
            return std::nullopt;
        }
        return it->second;
    };
}

struct StreamPair {
    TlsStream client;
    TlsStream server;
};

StreamPair make_pair(const TlsContext& cctx, const TlsContext& sctx,
                     std::string_view verify_name = {}) {
    auto ends = socket_pair();
    auto c = TlsStream::create(cctx, std::move(ends.client), verify_name);
    auto s = TlsStream::create(sctx, std::move(ends.server));
    REQUIRE(c);
    REQUIRE(s);
    return {std::move(*c), std::move(*s)};
}

// ---- certificates made at test time --------------------------------------------

struct PkeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
    void operator()(X509* x) const { X509_free(x); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

struct Issued {
    PkeyPtr key;
    X509Ptr cert;
};

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    REQUIRE(ext != nullptr);
    REQUIRE(X509_add_ext(cert, ext, -1) == 1);
    X509_EXTENSION_free(ext);
}

// A P-256 key and a certificate for `cn`, self-signed when `ca` is null.
Issued issue(const std::string& cn, const Issued* ca, bool is_ca, const char* san = nullptr) {
    static long serial = 1;
    Issued out;
    out.key.reset(EVP_EC_gen("P-256"));
    REQUIRE(out.key);
    out.cert.reset(X509_new());
    X509* x = out.cert.get();
    REQUIRE(X509_set_version(x, 2) == 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24);
    REQUIRE(X509_set_pubkey(x, out.key.get()) == 1);
    X509_NAME* name = X509_get_subject_name(x);
    REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                       0) == 1);
    X509* issuer = ca != nullptr ? ca->cert.get() : x;
    REQUIRE(X509_set_issuer_name(x, X509_get_subject_name(issuer)) == 1);
    add_ext(x, issuer, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(x, issuer, NID_key_usage,
            is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    add_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (ca != nullptr) {
        add_ext(x, issuer, NID_authority_key_identifier, "keyid");
    }
    if (san != nullptr) {
        add_ext(x, issuer, NID_subject_alt_name, san);
    }
    EVP_PKEY* signer = ca != nullptr ? ca->key.get() : out.key.get();
    REQUIRE(X509_sign(x, signer, EVP_sha256()) > 0);
    return out;
}

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/sp-control-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

void write_cert(const std::string& path, X509* cert) {
    FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    REQUIRE(PEM_write_X509(f, cert) == 1);
    std::fclose(f);
}

void write_key(const std::string& path, EVP_PKEY* key) {
    FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    REQUIRE(PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
    std::fclose(f);
}

// Two independent CAs; relay and agent certs from the first, rogue ones
// from the second.
struct Pki {
    TempDir dir;
    Pki() {
        Issued ca = issue("sallyport test CA", nullptr, true);
        Issued other = issue("other CA", nullptr, true);
        Issued relay = issue("relay", &ca, false, "IP:127.0.0.1,DNS:relay.test");
        Issued agent = issue("agent-7", &ca, false);
        Issued rogue_relay = issue("relay", &other, false, "IP:127.0.0.1,DNS:relay.test");
        Issued rogue_agent = issue("agent-7", &other, false);
        write_cert(dir.file("ca.pem"), ca.cert.get());
        write_cert(dir.file("other-ca.pem"), other.cert.get());
        write_cert(dir.file("relay.pem"), relay.cert.get());
        write_key(dir.file("relay.key"), relay.key.get());
        write_cert(dir.file("agent.pem"), agent.cert.get());
        write_key(dir.file("agent.key"), agent.key.get());
        write_cert(dir.file("rogue-relay.pem"), rogue_relay.cert.get());
        write_key(dir.file("rogue-relay.key"), rogue_relay.key.get());
        write_cert(dir.file("rogue-agent.pem"), rogue_agent.cert.get());
        write_key(dir.file("rogue-agent.key"), rogue_agent.key.get());
    }
    [[nodiscard]] std::string f(const std::string& n) const { return dir.file(n); }
};

}  // namespace

TEST_SUITE("control.tls") {
    TEST_CASE("tls: shared-key handshake succeeds and frames flow both ways") {
        auto sctx = TlsContext::psk_server(table({{"agent-1", secret_of(7)}}));
        auto cctx = TlsContext::psk_client("agent-1", secret_of(7));
        REQUIRE(sctx);
        REQUIRE(cctx);
        CHECK(sctx->psk_mode());
        CHECK(sctx->role() == TlsRole::Server);
        auto [c, s] = make_pair(*cctx, *sctx);
        const auto o = handshake_both(c, s);
        REQUIRE(o.client.status == TlsStatus::Done);
        REQUIRE(o.server.status == TlsStatus::Done);
        CHECK(s.peer_identity() == "agent-1");
        CHECK(c.peer_identity() == "agent-1");
        CHECK(std::string(SSL_get_version(s.native_handle())) == "TLSv1.3");
        CHECK(std::string(SSL_CIPHER_get_name(SSL_get_current_cipher(s.native_handle()))) ==
              "TLS_AES_128_GCM_SHA256");
        CHECK(SSL_session_reused(s.native_handle()) == 1);  // the external PSK was used
        // psk_dhe_ke: an ECDHE group was negotiated on both ends
        CHECK(SSL_get_negotiated_group(s.native_handle()) > 0);
        CHECK(SSL_get_negotiated_group(c.native_handle()) > 0);

        std::vector<uint8_t> frames;
        REQUIRE(encode(Hello{1, 1, "agent-1", "0.1.0", 4, 5000}, frames));
        REQUIRE(encode(Heartbeat{123}, frames));
        const auto up = transfer(c, s, frames);
        CHECK(up == frames);
        const auto d = decode(up);
        REQUIRE(d.status == DecodeStatus::Ok);
        CHECK(std::get<Hello>(d.message).agent_name == "agent-1");

        // larger than socket buffers: exercises WantWrite and partial writes
        std::vector<uint8_t> big(size_t{3} * 1024 * 1024);
        for (size_t i = 0; i < big.size(); ++i) {
            big[i] = static_cast<uint8_t>(i * 31 + (i >> 13));
        }
        const auto down = transfer(s, c, big);
        CHECK(down.size() == big.size());
        CHECK(down == big);
        CHECK(s.pending_bytes() == 0);
    }

    TEST_CASE("tls: close_notify reaches the peer as end of stream") {
        auto sctx = TlsContext::psk_server(table({{"a", secret_of(1)}}));
        auto cctx = TlsContext::psk_client("a", secret_of(1));
        auto [c, s] = make_pair(*cctx, *sctx);
        const auto o = handshake_both(c, s);
        REQUIRE(o.server.status == TlsStatus::Done);
        const std::vector<uint8_t> bye = {1, 2, 3};
        c.queue(bye);
        CHECK(c.shutdown().status == TlsStatus::Done);
        std::vector<uint8_t> buf(64);
        auto r = s.read(buf);
        REQUIRE(r.status == TlsStatus::Ok);
        CHECK(r.bytes == 3);
        CHECK(s.read(buf).status == TlsStatus::Eof);
    }

    TEST_CASE("tls: a stream moved after the handshake keeps working") {
        auto sctx = TlsContext::psk_server(table({{"a", secret_of(2)}}));
        auto cctx = TlsContext::psk_client("a", secret_of(2));
        auto p = make_pair(*cctx, *sctx);
        REQUIRE(handshake_both(p.client, p.server).server.status == TlsStatus::Done);
        TlsStream moved = std::move(p.server);
        CHECK(moved.handshake_done());
        CHECK(moved.peer_identity() == "a");
        const std::vector<uint8_t> data(100000, 0x5a);
        CHECK(transfer(p.client, moved, data) == data);
        TlsStream again = std::move(moved);
        CHECK(transfer(again, p.client, data) == data);
    }

    TEST_CASE("tls: wrong secret fails on both ends as bad-key") {
        auto sctx = TlsContext::psk_server(table({{"agent-1", secret_of(7)}}));
        auto cctx = TlsContext::psk_client("agent-1", secret_of(8));
        auto [c, s] = make_pair(*cctx, *sctx);
        const auto o = handshake_both(c, s);
        REQUIRE(o.server.status == TlsStatus::Error);
        CHECK(o.server.failure == TlsFailure::BadKey);
        CHECK(o.server.reason.find("agent-1") != std::string::npos);
        REQUIRE(o.client.status == TlsStatus::Error);
        CAPTURE(o.client.reason);
        CHECK(o.client.failure == TlsFailure::BadKey);
        CHECK(s.peer_identity().empty());
    }

    TEST_CASE("tls: unknown key id fails as bad-key and names the id") {
        int lookups = 0;
        auto sctx = TlsContext::psk_server([&lookups](std::string_view id) {
            ++lookups;
            return id == "known" ? std::optional(secret_of(3)) : std::nullopt;
        });
        auto cctx = TlsContext::psk_client("stranger", secret_of(3));
        auto [c, s] = make_pair(*cctx, *sctx);
        const auto o = handshake_both(c, s);
        CHECK(lookups == 1);
        REQUIRE(o.server.status == TlsStatus::Error);
        CHECK(o.server.failure == TlsFailure::BadKey);
        CHECK(o.server.reason.find("unknown key id") != std::string::npos);
        CHECK(o.server.reason.find("stranger") != std::string::npos);
        REQUIRE(o.client.status == TlsStatus::Error);
        CHECK(o.client.failure == TlsFailure::BadKey);
    }

    TEST_CASE("tls: psk without (EC)DHE is refused so sessions keep forward secrecy") {
        // The client offers psk_ke and a key share in a group the server does
        // not take: only a psk_ke (no DHE) handshake could succeed.
        auto sctx = TlsContext::psk_server(table({{"a", secret_of(5)}}));
        auto cctx = TlsContext::psk_client("a", secret_of(5));
        auto setup = [](StreamPair& p) {
            SSL_set_options(p.client.native_handle(), SSL_OP_ALLOW_NO_DHE_KEX);
            REQUIRE(SSL_set1_groups_list(p.client.native_handle(), "P-256") == 1);
            REQUIRE(SSL_set1_groups_list(p.server.native_handle(), "X25519") == 1);
        };
        SUBCASE("our server refuses") {
            auto p = make_pair(*cctx, *sctx);
            setup(p);
            const auto o = handshake_both(p.client, p.server);
            CHECK(o.server.status == TlsStatus::Error);
            CHECK(o.server.failure == TlsFailure::Protocol);
            CHECK(o.client.status == TlsStatus::Error);
        }
        SUBCASE("control: a server that allows psk_ke would have accepted") {
            auto p = make_pair(*cctx, *sctx);
            setup(p);
            SSL_set_options(p.server.native_handle(), SSL_OP_ALLOW_NO_DHE_KEX);
            const auto o = handshake_both(p.client, p.server);
            CHECK(o.server.status == TlsStatus::Done);
            CHECK(o.client.status == TlsStatus::Done);
            CHECK(SSL_get_negotiated_group(p.server.native_handle()) == 0);
        }
    }

    TEST_CASE("tls: garbage instead of a ClientHello is a protocol failure") {
        auto sctx = TlsContext::psk_server(table({{"a", secret_of(1)}}));
        auto ends = socket_pair();
        auto s = TlsStream::create(*sctx, std::move(ends.server));
        REQUIRE(s);
        const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        REQUIRE(::write(ends.client.get(), junk, sizeof junk - 1) > 0);
        TlsResult r;
        for (int i = 0; i < 50; ++i) {
            r = s->handshake();
            if (terminal(r)) {
                break;
            }
            wait_for({{&*s, true}});
        }
        REQUIRE(r.status == TlsStatus::Error);
        CHECK(r.failure == TlsFailure::Protocol);
    }

    TEST_CASE("tls: nothing is readable or writable before the handshake completes") {
        auto sctx = TlsContext::psk_server(table({{"a", secret_of(1)}}));
        auto cctx = TlsContext::psk_client("a", secret_of(1));
        auto [c, s] = make_pair(*cctx, *sctx);
        std::vector<uint8_t> buf(16);
        CHECK(s.read(buf).status == TlsStatus::Error);
        c.queue(buf);
        CHECK(c.flush().status == TlsStatus::Error);
        CHECK(c.pending_bytes() == 16);
    }

    TEST_CASE("tls: bad psk client parameters are refused") {
        CHECK_FALSE(TlsContext::psk_client("", secret_of(1)));
        CHECK_FALSE(TlsContext::psk_client("id", std::vector<uint8_t>(8, 1)));
    }

    TEST_CASE("tls: certificate mode authenticates both ends") {
        Pki pki;
        auto sctx =
            TlsContext::cert_server(pki.f("relay.pem"), pki.f("relay.key"), pki.f("ca.pem"));
        auto cctx =
            TlsContext::cert_client(pki.f("agent.pem"), pki.f("agent.key"), pki.f("ca.pem"));
        REQUIRE(sctx);
        REQUIRE(cctx);
        CHECK_FALSE(sctx->psk_mode());
        SUBCASE("by chain and IP") {
            auto [c, s] = make_pair(*cctx, *sctx, "127.0.0.1");
            const auto o = handshake_both(c, s);
            REQUIRE(o.client.status == TlsStatus::Done);
            REQUIRE(o.server.status == TlsStatus::Done);
            CHECK(s.peer_identity() == "agent-7");
            CHECK(c.peer_identity() == "relay");
            CHECK(std::string(SSL_get_version(c.native_handle())) == "TLSv1.3");
            const std::vector<uint8_t> ping = {9, 8, 7};
            CHECK(transfer(c, s, ping) == ping);
            CHECK(transfer(s, c, ping) == ping);
        }
        SUBCASE("by DNS name") {
            auto [c, s] = make_pair(*cctx, *sctx, "relay.test");
            const auto o = handshake_both(c, s);
            CHECK(o.client.status == TlsStatus::Done);
            CHECK(o.server.status == TlsStatus::Done);
        }
        SUBCASE("a relay certificate for another name is refused") {
            auto [c, s] = make_pair(*cctx, *sctx, "other.test");
            const auto o = handshake_both(c, s);
            REQUIRE(o.client.status == TlsStatus::Error);
            CHECK(o.client.failure == TlsFailure::BadKey);
            CHECK(o.server.status == TlsStatus::Error);
        }
    }

    TEST_CASE("tls: certificate mode refuses an agent certificate from another CA") {
        Pki pki;
        auto sctx =
            TlsContext::cert_server(pki.f("relay.pem"), pki.f("relay.key"), pki.f("ca.pem"));
        auto cctx = TlsContext::cert_client(pki.f("rogue-agent.pem"), pki.f("rogue-agent.key"),
                                            pki.f("ca.pem"));
        REQUIRE(sctx);
        REQUIRE(cctx);
        auto [c, s] = make_pair(*cctx, *sctx);
        const auto o = handshake_both(c, s);
        REQUIRE(o.server.status == TlsStatus::Error);
        CHECK(o.server.failure == TlsFailure::BadKey);
        // In TLS 1.3 the client finishes before the server checks its
        // certificate; it learns of the refusal on its first read.
        if (o.client.status == TlsStatus::Done) {
            std::vector<uint8_t> buf(16);
            TlsResult r;
            for (int i = 0; i < 50; ++i) {
                r = c.read(buf);
                if (r.status != TlsStatus::WantRead) {
                    break;
                }
                wait_for({{&c, true}});
            }
            CHECK(r.status == TlsStatus::Error);
            CHECK(r.failure == TlsFailure::BadKey);
        } else {
            CHECK(o.client.failure == TlsFailure::BadKey);
        }
    }

    TEST_CASE("tls: certificate mode refuses a relay certificate from another CA") {
        Pki pki;
        auto sctx = TlsContext::cert_server(pki.f("rogue-relay.pem"), pki.f("rogue-relay.key"),
                                            pki.f("ca.pem"));
        auto cctx =
            TlsContext::cert_client(pki.f("agent.pem"), pki.f("agent.key"), pki.f("ca.pem"));
        REQUIRE(sctx);
        REQUIRE(cctx);
        auto [c, s] = make_pair(*cctx, *sctx);
        const auto o = handshake_both(c, s);
        REQUIRE(o.client.status == TlsStatus::Error);
        CHECK(o.client.failure == TlsFailure::BadKey);
        CHECK(o.server.status == TlsStatus::Error);
    }

    TEST_CASE("tls: certificate contexts report unreadable or mismatched files") {
        Pki pki;
        auto missing =
            TlsContext::cert_server(pki.f("nope.pem"), pki.f("relay.key"), pki.f("ca.pem"));
        REQUIRE_FALSE(missing);
        CHECK(missing.error().message.find("nope.pem") != std::string::npos);
        CHECK_FALSE(
            TlsContext::cert_server(pki.f("relay.pem"), pki.f("agent.key"), pki.f("ca.pem")));
        CHECK_FALSE(TlsContext::cert_client(pki.f("agent.pem"), pki.f("agent.key"),
                                            pki.f("missing-ca.pem")));
    }
}
