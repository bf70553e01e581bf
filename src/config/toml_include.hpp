// SPDX-License-Identifier: Apache-2.0
// Internal to sp_config: the only way sp_config includes toml++, so every
// translation unit sees toml++ with the same assertion settings.
#pragma once

// toml++ 3.3's parser states some input-dependent conditions as
// TOML_ASSERT_ASSUME and handles them with a parse error right after: a table
// header such as "[#" or "[[[1]]]" reaches parse_key() with a character that
// starts no key (fixed upstream in marzer/tomlplusplus#301). Without NDEBUG
// that is an assert(), so one typo in relay.toml would abort the daemon; with
// NDEBUG under clang it is __builtin_assume(), so the compiler may delete the
// error branch. Make it a no-op (what gcc release builds get anyway) so the
// parser's own error handling runs. The preprocessor header is #pragma once:
// including it first lets this definition win everywhere toml++ expands it.
#include <toml++/impl/preprocessor.h>
#undef TOML_ASSERT_ASSUME
#define TOML_ASSERT_ASSUME(expr) static_assert(true)

#include <toml++/toml.h>
