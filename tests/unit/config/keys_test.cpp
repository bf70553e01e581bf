// SPDX-License-Identifier: Apache-2.0
#include "config/keys.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include <doctest/doctest.h>

using namespace sp::config;

namespace {

std::string data(const std::string& name) {
    return std::string(SP_TEST_DATA) + "/keys/" + name;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A file with the given content and mode, removed when the test ends.
class TempFile {
public:
    TempFile(const std::string& content, mode_t mode) {
        const char* tmp = std::getenv("TMPDIR");
        path_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/sp-keys-XXXXXX";
        const int fd = ::mkstemp(path_.data());
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, content.data(), content.size()) == ssize_t(content.size()));
        REQUIRE(::fchmod(fd, mode) == 0);
        ::close(fd);
    }
    ~TempFile() { ::unlink(path_.c_str()); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    [[nodiscard]] const std::string& path() const { return path_; }

private:
    std::string path_;
};

sp::Error parse_error(const std::string& name) {
    const std::string text = slurp(data(name));
    REQUIRE_FALSE(text.empty());
    auto k = parse_keys(text, name);
    REQUIRE_FALSE(k);
    CHECK(k.error().kind == sp::ErrorKind::Config);
    CHECK(k.error().file == name);
    // The secret must never appear in a message.
    const auto space = text.find(' ');
    if (space != std::string::npos) {
        const std::string secret = text.substr(space + 1, 20);
        CHECK(k.error().describe().find(secret) == std::string::npos);
    }
    return k.error();
}

}  // namespace

TEST_SUITE("config.keys") {
    TEST_CASE("keys: base64url round trips every length") {
        std::vector<uint8_t> bytes;
        for (int n = 0; n < 70; ++n) {
            const std::string text = base64url_encode(bytes);
            CHECK(text.find_first_of("+/=") == std::string::npos);
            auto back = base64url_decode(text);
            REQUIRE(back);
            CHECK(*back == bytes);
            bytes.push_back(static_cast<uint8_t>(n * 37 + 250));
        }
    }

    TEST_CASE("keys: base64url matches RFC 4648 vectors without padding") {
        const auto enc = [](std::string s) {
            return base64url_encode(std::vector<uint8_t>(s.begin(), s.end()));
        };
        CHECK(enc("") == "");
        CHECK(enc("f") == "Zg");
        CHECK(enc("fo") == "Zm8");
        CHECK(enc("foo") == "Zm9v");
        CHECK(enc("foob") == "Zm9vYg");
        CHECK(enc("fooba") == "Zm9vYmE");
        CHECK(enc("foobar") == "Zm9vYmFy");
        CHECK(base64url_encode({0xfb, 0xff}) == "-_8");
    }

    TEST_CASE("keys: base64url decode is strict") {
        CHECK_FALSE(base64url_decode("Zg=="));     // padding
        CHECK_FALSE(base64url_decode("Z"));        // impossible length
        CHECK_FALSE(base64url_decode("Zm9v+A"));   // standard alphabet
        CHECK_FALSE(base64url_decode("Zm9v/A"));   // standard alphabet
        CHECK_FALSE(base64url_decode("Zh"));       // non-zero trailing bits
        CHECK_FALSE(base64url_decode("Zm9 vYg"));  // whitespace
        CHECK(base64url_decode("Zg"));
    }

    TEST_CASE("keys: generated lines parse back to a 32-byte secret and differ") {
        std::set<std::string> seen;
        for (int i = 0; i < 8; ++i) {
            auto line = generate_key_line("mft-1");
            REQUIRE(line);
            CHECK(line->back() == '\n');
            CHECK(line->starts_with("mft-1 "));
            CHECK(line->size() == 6 + 43 + 1);
            auto keys = parse_keys(*line, "gen");
            REQUIRE(keys);
            REQUIRE(keys->size() == 1);
            CHECK((*keys)[0].id == "mft-1");
            CHECK((*keys)[0].secret.size() == 32);
            seen.insert(*line);
        }
        CHECK(seen.size() == 8);
    }

    TEST_CASE("keys: generate_key_line refuses a bad ID") {
        CHECK_FALSE(generate_key_line(""));
        CHECK_FALSE(generate_key_line("has space"));
        CHECK_FALSE(generate_key_line(std::string(65, 'a')));
        CHECK(generate_key_line(std::string(64, 'a')));
    }

    TEST_CASE("keys: a relay file with comments, tabs and CRLF parses") {
        auto keys = parse_keys(slurp(data("relay.keys")), "relay.keys");
        REQUIRE(keys);
        REQUIRE(keys->size() == 3);
        CHECK((*keys)[0].id == "mft-1");
        CHECK((*keys)[1].id == "mft-2");
        CHECK((*keys)[2].id == "dr_site.2");
        for (const auto& k : *keys) {
            CHECK(k.secret.size() == 32);
        }
    }

    TEST_CASE("keys: bad base64 is refused at the secret's position") {
        const auto e = parse_error("bad-base64.keys");
        CHECK(e.line == 1);
        CHECK(e.column == 3);
        CHECK(e.key == "a");
        CHECK(e.message.find("base64url") != std::string::npos);
    }

    TEST_CASE("keys: padded base64 is refused") {
        const auto e = parse_error("padded.keys");
        CHECK(e.message.find("padding") != std::string::npos);
    }

    TEST_CASE("keys: a secret of the wrong length is refused") {
        CHECK(parse_error("short-secret.keys").message.find("31 bytes") != std::string::npos);
        CHECK(parse_error("long-secret.keys").message.find("33 bytes") != std::string::npos);
    }

    TEST_CASE("keys: a duplicate ID names the first line") {
        const auto e = parse_error("duplicate-id.keys");
        CHECK(e.line == 3);
        CHECK(e.column == 1);
        CHECK(e.key == "a");
        CHECK(e.message.find("line 1") != std::string::npos);
    }

    TEST_CASE("keys: malformed lines are refused") {
        CHECK(parse_error("missing-secret.keys").message.find("missing secret") !=
              std::string::npos);
        CHECK(parse_error("extra-field.keys").message.find("after the secret") !=
              std::string::npos);
        const auto bad_id = parse_error("bad-id.keys");
        CHECK(bad_id.key.empty());
        CHECK(bad_id.message.find("invalid key ID") != std::string::npos);
    }

    TEST_CASE("keys: check_key_file reports every bad line, load_keys the first") {
        const std::string good = *generate_key_line("good");
        const TempFile f("bad id! AAAA\n" + good + "short AAAA\nnosecret\n" +
                             good.substr(0, good.size() - 1) + "\n",
                         0600);
        const auto errors = check_key_file(f.path(), false);
        REQUIRE(errors.size() == 4);
        CHECK(errors[0].line == 1);
        CHECK(errors[1].line == 3);
        CHECK(errors[1].key == "short");
        CHECK(errors[2].line == 4);
        CHECK(errors[3].line == 5);
        CHECK(errors[3].message.find("duplicate key ID") != std::string::npos);
        auto k = load_keys(f.path(), false);
        REQUIRE_FALSE(k);
        CHECK(k.error().line == 1);
        CHECK(k.error().message.find("and 3 more errors") != std::string::npos);
    }

    TEST_CASE("keys: check_key_file is empty for a good file and applies the agent's rule") {
        const TempFile f(*generate_key_line("a") + *generate_key_line("b"), 0600);
        CHECK(check_key_file(f.path(), false).empty());
        const auto errors = check_key_file(f.path(), true);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].message.find("exactly one") != std::string::npos);
    }

    TEST_CASE("keys: load_keys reads a mode 600 file") {
        const TempFile f(slurp(data("relay.keys")), 0600);
        auto keys = load_keys(f.path(), false);
        REQUIRE(keys);
        CHECK(keys->size() == 3);
    }

    TEST_CASE("keys: load_keys refuses a group- or world-readable file with the chmod fix") {
        const TempFile f(slurp(data("agent.key")), 0644);
        auto keys = load_keys(f.path(), true);
        REQUIRE_FALSE(keys);
        CHECK(keys.error().file == f.path());
        CHECK(keys.error().message.find("chmod 600 " + f.path()) != std::string::npos);
        CHECK(keys.error().message.find("0644") != std::string::npos);
        const TempFile g(slurp(data("agent.key")), 0640);
        CHECK_FALSE(load_keys(g.path(), true));
    }

    TEST_CASE("keys: load_keys refuses a file another user owns, with the chown fix") {
        if (::geteuid() != 0) {
            MESSAGE("not root: cannot give a file to another user; skipped");
            return;
        }
        const TempFile f(*generate_key_line("a"), 0600);
        REQUIRE(::chown(f.path().c_str(), 65534, 65534) == 0);
        auto k = load_keys(f.path(), true);
        REQUIRE_FALSE(k);
        CHECK(k.error().kind == sp::ErrorKind::Config);
        CHECK(k.error().message.find("uid 65534") != std::string::npos);
        CHECK(k.error().message.find("chown ") != std::string::npos);
        CHECK(check_key_file(f.path(), true).size() == 1);
        REQUIRE(::chown(f.path().c_str(), 0, 0) == 0);
        CHECK(load_keys(f.path(), true));
    }

    TEST_CASE("keys: read_private_file applies the key file checks and names the file") {
        const TempFile ok("alice:s3cret\n", 0600);
        auto text = read_private_file(ok.path(), "users file");
        REQUIRE(text);
        CHECK(*text == "alice:s3cret\n");
        const TempFile open_to_all("alice:s3cret\n", 0644);
        auto refused = read_private_file(open_to_all.path(), "users file");
        REQUIRE_FALSE(refused);
        CHECK(refused.error().message.find("users file is accessible by group or others") !=
              std::string::npos);
        CHECK(refused.error().message.find("chmod 600 " + open_to_all.path()) != std::string::npos);
        CHECK_FALSE(read_private_file("/nonexistent/users", "users file"));
    }

    TEST_CASE("keys: an agent key file with two lines is refused") {
        const TempFile f(slurp(data("agent-two-lines.key")), 0600);
        auto one = load_keys(f.path(), true);
        REQUIRE_FALSE(one);
        CHECK(one.error().message.find("exactly one") != std::string::npos);
        CHECK(load_keys(f.path(), false));
    }

    TEST_CASE("keys: an agent key file with one line loads") {
        const TempFile f(slurp(data("agent.key")), 0400);
        auto one = load_keys(f.path(), true);
        REQUIRE(one);
        CHECK((*one)[0].id == "mft-1");
    }

    TEST_CASE("keys: a file without keys is refused") {
        const TempFile f(slurp(data("empty.keys")), 0600);
        auto keys = load_keys(f.path(), false);
        REQUIRE_FALSE(keys);
        CHECK(keys.error().message.find("no key") != std::string::npos);
    }

    TEST_CASE("keys: non-regular and missing files are refused") {
        auto dir = load_keys(SP_TEST_DATA, false);
        REQUIRE_FALSE(dir);
        CHECK(dir.error().message.find("not a regular file") != std::string::npos);
        auto null = load_keys("/dev/null", false);
        REQUIRE_FALSE(null);
        CHECK(null.error().message.find("not a regular file") != std::string::npos);
        auto missing = load_keys("/nonexistent/agent.key", true);
        REQUIRE_FALSE(missing);
        CHECK(missing.error().code == ENOENT);
    }
}
