// SPDX-License-Identifier: Apache-2.0
// The one translation unit that compiles toml++. Debian ships the library
// built with exceptions; the project arguments (TOML_EXCEPTIONS=0,
// TOML_HEADER_ONLY=0, TOML_ENABLE_FORMATTERS=0) make toml::parse return a
// toml::parse_result instead, so a syntax error is a value with a position.
// toml++ 3.3 compiles cleanly under our warning flags with g++ 12 and
// clang++ 14, so no diagnostic pragmas are needed. toml_include.hpp carries
// the workaround for toml++'s input-reachable assertions.
#define TOML_IMPLEMENTATION
#include "config/toml_include.hpp"
