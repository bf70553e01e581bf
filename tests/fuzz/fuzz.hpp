// SPDX-License-Identifier: Apache-2.0
// The libFuzzer entry point every <target>_fuzz.cpp defines.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
