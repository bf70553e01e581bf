// SPDX-License-Identifier: Apache-2.0
// Replays fuzz corpora without libFuzzer (systemd's fuzz-main.c pattern), so
// every crash ever found stays a regression test under gcc.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz.hpp"

namespace {

int replay_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "cannot read %s\n", path.c_str());
        return 1;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    (void)LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    return 0;
}

int replay(const std::string& path, int& count) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        std::fprintf(stderr, "missing %s\n", path.c_str());
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        ++count;
        return replay_file(path);
    }
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) {
        return 1;
    }
    int failures = 0;
    while (const dirent* e = ::readdir(dir)) {
        const std::string name = e->d_name;
        if (name == "." || name == "..") {
            continue;
        }
        std::string file = path;
        file += '/';
        file += name;
        failures += replay(file, count);
    }
    ::closedir(dir);
    return failures;
}

}  // namespace

int main(int argc, char** argv) {
    int failures = 0;
    int count = 0;
    // The empty input is always worth a try.
    (void)LLVMFuzzerTestOneInput(nullptr, 0);
    for (int i = 1; i < argc; ++i) {
        failures += replay(argv[i], count);
    }
    std::printf("replayed %d inputs\n", count);
    return failures == 0 && count > 0 ? 0 : 1;
}
