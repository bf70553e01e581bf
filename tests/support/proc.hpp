// SPDX-License-Identifier: Apache-2.0
// Test helper: a child process started by PID with its output in a file, and
// stopped by PID (SIGTERM, then SIGKILL after a bound) when the test ends.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace sp::test {

class Process final {
public:
    /// Starts `argv` with stdout and stderr appended to `log_path`.
    /// `env` entries ("K=V") are added to the inherited environment.
    static Process start(const std::vector<std::string>& argv, const std::string& log_path,
                         const std::vector<std::string>& env = {});
    Process() = default;
    Process(Process&& o) noexcept;
    Process& operator=(Process&& o) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process();

    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] bool running();
    void signal(int sig) const;
    /// Waits up to `timeout` for exit; returns the exit status (or 128+signal).
    std::optional<int> wait(std::chrono::milliseconds timeout);
    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    std::optional<int> stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
    /// The output so far.
    [[nodiscard]] std::string output() const;
    /// Polls the output until it contains `needle` or `timeout` passes.
    bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout,
                         size_t occurrences = 1);

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
    std::string log_path_;
};

/// Runs a command to completion (bounded by `timeout`, killed after) and
/// returns {exit status, combined output}.
struct RunResult {
    int status = -1;
    std::string output;
};
RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
              const std::vector<std::string>& env = {});

/// A fresh directory under $TMPDIR removed (recursively) on destruction.
class TempDir final {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::string& path() const { return path_; }
    /// Writes `content` to path()/name with `mode` and returns the full path.
    std::string write(const std::string& name, const std::string& content, unsigned mode = 0600);

private:
    std::string path_;
};

[[nodiscard]] std::string read_file(const std::string& path);
[[nodiscard]] size_t count_occurrences(const std::string& hay, const std::string& needle);

}  // namespace sp::test
