// SPDX-License-Identifier: Apache-2.0
// sallyport-bench's command line: one Options struct for every command, parsed
// and range-checked in one place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "base/result.hpp"

namespace sp::bench {

enum class Dir { Up, Down, Both };
enum class ServeMode { All, Sink, Source, Echo, Banner };

struct Options {
    std::string command;
    std::string address;
    bool allow_remote = false;
    bool json = false;
    bool expect_banner = false;
    int parallel = 1;
    int threads = 0;
    double seconds = 10;
    size_t size = 1;
    int count = 100;
    double hold = 5;
    uint32_t seed = 1;
    Dir dir = Dir::Up;
    ServeMode mode = ServeMode::All;
    std::string ready_file;
    // Clients reach --connect through this SOCKS5 proxy (RFC 1928 CONNECT,
    // no authentication): the forward-proxy benchmarks. Empty = direct.
    std::string socks5;
};

/// Prints the synopsis of every command to `out`.
void usage(FILE* out);

/// Parses argv (argv[1] is the command). Usage errors name the bad option.
[[nodiscard]] Result<Options> parse_options(int argc, char** argv);

}  // namespace sp::bench
