// SPDX-License-Identifier: Apache-2.0
#include "options.hpp"

#include <cstdlib>
#include <string_view>

namespace sp::bench {
namespace {

constexpr int kMaxParallel = 256;

}  // namespace

void usage(FILE* out) {
    std::fputs(
        "usage: sallyport-bench serve  --listen HOST:PORT [--mode all|sink|source|echo|banner]\n"
        "                              [--threads N] [-t SECONDS]\n"
        "       sallyport-bench stream --connect HOST:PORT [-P N] [--dir up|down|both] [-t S]\n"
        "       sallyport-bench rr     --connect HOST:PORT [-P N] [--size BYTES] [-t S]\n"
        "       sallyport-bench crr    --connect HOST:PORT [-P N] [--size BYTES] [-t S]\n"
        "       sallyport-bench idle   --connect HOST:PORT [-n N] [--hold S] [--ready-file F]\n"
        "       sallyport-bench burst  --connect HOST:PORT [-n N] [-P THREADS] [--size BYTES]\n"
        "                              [-t S]   (N clients connect at once; default 500)\n"
        "common: --json  --seed N  --expect-banner  --allow-remote (default: loopback only)\n"
        "        --socks5 HOST:PORT  (clients connect through this SOCKS5 proxy)\n",
        out);
}

[[nodiscard]] Result<Options> parse_options(int argc, char** argv) {
    Options o;
    if (argc < 2) {
        return usage_error("missing command");
    }
    o.command = argv[1];
    bool seconds_set = false;
    bool count_set = false;
    for (int i = 2; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> Result<std::string_view> {
            if (i + 1 >= argc) {
                return usage_error("{} needs a value", a);
            }
            return std::string_view(argv[++i]);
        };
        auto number = [&]() -> Result<double> {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            char* end = nullptr;
            const std::string s(*v);
            const double d = std::strtod(s.c_str(), &end);
            if (end == s.c_str() || *end != '\0' || d < 0) {
                return usage_error("{}: bad number '{}'", a, s);
            }
            return d;
        };
        if (a == "--listen" || a == "--connect" || a == "-c") {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            o.address = *v;
        } else if (a == "--socks5") {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            o.socks5 = *v;
        } else if (a == "--allow-remote") {
            o.allow_remote = true;
        } else if (a == "--json") {
            o.json = true;
        } else if (a == "--expect-banner") {
            o.expect_banner = true;
        } else if (a == "--ready-file") {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            o.ready_file = *v;
        } else if (a == "--dir" || a == "--mode") {
            auto v = value();
            if (!v) {
                return tl::unexpected(v.error());
            }
            if (a == "--dir") {
                if (*v == "up") {
                    o.dir = Dir::Up;
                } else if (*v == "down") {
                    o.dir = Dir::Down;
                } else if (*v == "both") {
                    o.dir = Dir::Both;
                } else {
                    return usage_error("--dir: expected up, down or both, got '{}'", *v);
                }
            } else if (*v == "all") {
                o.mode = ServeMode::All;
            } else if (*v == "sink") {
                o.mode = ServeMode::Sink;
            } else if (*v == "source") {
                o.mode = ServeMode::Source;
            } else if (*v == "echo") {
                o.mode = ServeMode::Echo;
            } else if (*v == "banner") {
                o.mode = ServeMode::Banner;
            } else {
                return usage_error("--mode: expected all, sink, source, echo or banner");
            }
        } else {
            auto n = number();
            if (!n) {
                return tl::unexpected(n.error());
            }
            if (a == "-P" || a == "--parallel") {
                o.parallel = static_cast<int>(*n);
            } else if (a == "--threads") {
                o.threads = static_cast<int>(*n);
            } else if (a == "-t" || a == "--time") {
                o.seconds = *n;
                seconds_set = true;
            } else if (a == "--size") {
                o.size = static_cast<size_t>(*n);
            } else if (a == "-n") {
                o.count = static_cast<int>(*n);
                count_set = true;
            } else if (a == "--hold") {
                o.hold = *n;
            } else if (a == "--seed") {
                o.seed = static_cast<uint32_t>(*n);
            } else {
                return usage_error("unknown option '{}'", a);
            }
        }
    }
    if (o.address.empty()) {
        return usage_error("{}: --listen/--connect HOST:PORT is required", o.command);
    }
    if (o.parallel < 1 || o.parallel > kMaxParallel) {
        return usage_error("-P must be 1..{}", kMaxParallel);
    }
    if (o.size < 1 || o.size > (size_t{1} << 24)) {
        return usage_error("--size must be 1..16777216");
    }
    if (o.command == "serve" && !seconds_set) {
        o.seconds = 3600;  // a forgotten server still goes away
    }
    if (o.command == "burst" && !count_set) {
        o.count = 500;  // issue 11: a burst of 500 simultaneous new clients
    }
    if (o.command == "burst" && o.count < 1) {
        return usage_error("burst: -n must be at least 1");
    }
    if (o.seconds <= 0 || o.seconds > 86400 || o.hold > 3600 || o.count < 0 ||
        o.count > 1'000'000) {
        return usage_error("time, hold or count out of range");
    }
    return o;
}

}  // namespace sp::bench
