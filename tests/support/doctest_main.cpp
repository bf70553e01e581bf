// SPDX-License-Identifier: Apache-2.0
// The doctest runner, compiled once: its main is costly to build on 2 cores.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
