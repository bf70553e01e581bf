// SPDX-License-Identifier: Apache-2.0
// The one translation unit that compiles toml++. Debian ships the library
// built with exceptions; the project arguments (TOML_EXCEPTIONS=0,
// TOML_HEADER_ONLY=0, TOML_ENABLE_FORMATTERS=0) make toml::parse return a
// toml::parse_result instead, so a syntax error is a value with a position.
// toml++ 3.3 compiles cleanly under our warning flags with g++ 12 and
// clang++ 14, so no diagnostic pragmas are needed here.
#define TOML_IMPLEMENTATION

// toml++ 3.3's parser states some input-dependent conditions as
// TOML_ASSERT_ASSUME and handles them with a parse error right after: a
// table header such as "[#" or "[[[1]]]" reaches parse_key() with a character
// that is no key start (fixed upstream in marzer/tomlplusplus#301). Without
// NDEBUG that is an assert(), so one typo in relay.toml would abort the
// daemon; with NDEBUG under clang it is __builtin_assume(), so the compiler may
// delete the error branch. Make it a no-op (what gcc release builds get
// anyway) so the parser's own error handling runs. The preprocessor header is
// included first (it is #pragma once) so our definition wins in parser.inl.
#include <toml++/impl/preprocessor.h>
#undef TOML_ASSERT_ASSUME
#define TOML_ASSERT_ASSUME(expr) static_assert(true)

#include <toml++/toml.h>
