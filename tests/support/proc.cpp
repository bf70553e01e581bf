// SPDX-License-Identifier: Apache-2.0
#include "proc.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

extern char** environ;

namespace sp::test {

namespace {

std::vector<char*> to_cstrs(const std::vector<std::string>& v) {
    std::vector<char*> out;
    out.reserve(v.size() + 1);
    for (const auto& s : v) {
        out.push_back(const_cast<char*>(s.c_str()));
    }
    out.push_back(nullptr);
    return out;
}

std::optional<int> decode(int status) {
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return std::nullopt;
}

}  // namespace

Process Process::start(const std::vector<std::string>& argv, const std::string& log_path,
                       const std::vector<std::string>& env) {
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
        envs.emplace_back(*e);
    }
    envs.insert(envs.end(), env.begin(), env.end());
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    Process p;
    p.log_path_ = log_path;
    auto args = to_cstrs(argv);
    auto envp = to_cstrs(envs);
    if (posix_spawn(&p.pid_, argv[0].c_str(), &fa, nullptr, args.data(), envp.data()) != 0) {
        p.pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    return p;
}

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), status_(o.status_), log_path_(std::move(o.log_path_)) {}

Process& Process::operator=(Process&& o) noexcept {
    if (this != &o) {
        (void)stop(std::chrono::seconds(5));
        pid_ = std::exchange(o.pid_, -1);
        status_ = o.status_;
        log_path_ = std::move(o.log_path_);
    }
    return *this;
}

Process::~Process() {
    (void)stop(std::chrono::seconds(5));
}

bool Process::running() {
    if (pid_ <= 0 || status_) {
        return false;
    }
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
        status_ = decode(st);
        return false;
    }
    return r == 0;
}

void Process::signal(int sig) const {
    if (pid_ > 0 && !status_) {
        ::kill(pid_, sig);
    }
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (running() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status_;
}

std::optional<int> Process::stop(std::chrono::milliseconds grace) {
    if (pid_ <= 0) {
        return std::nullopt;
    }
    if (running()) {
        signal(SIGTERM);
        if (!wait(grace)) {
            signal(SIGKILL);
            (void)wait(std::chrono::seconds(5));
        }
    }
    return status_;
}

std::string Process::output() const {
    return read_file(log_path_);
}

bool Process::wait_for_output(const std::string& needle, std::chrono::milliseconds timeout,
                              size_t occurrences) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    do {
        if (count_occurrences(output(), needle) >= occurrences) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < until);
    return count_occurrences(output(), needle) >= occurrences;
}

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
              const std::vector<std::string>& env) {
    TempDir dir;
    const std::string log = dir.path() + "/out";
    Process p = Process::start(argv, log, env);
    RunResult r;
    auto st = p.wait(timeout);
    if (!st) {
        st = p.stop(std::chrono::seconds(1));
    }
    r.status = st.value_or(-1);
    r.output = read_file(log);
    return r;
}

TempDir::TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr ? base : "/tmp") + "/sallyport-test-XXXXXX";
    if (::mkdtemp(templ.data()) != nullptr) {
        path_ = templ;
    }
}

TempDir::~TempDir() {
    std::error_code ec;
    // SP_TEST_KEEP=1 leaves logs and configs behind for a post-mortem.
    if (!path_.empty() && std::getenv("SP_TEST_KEEP") == nullptr) {
        std::filesystem::remove_all(path_, ec);
    }
}

std::string TempDir::write(const std::string& name, const std::string& content, unsigned mode) {
    std::string p = path_ + "/" + name;
    {
        std::ofstream out(p, std::ios::binary | std::ios::trunc);
        out << content;
    }
    ::chmod(p.c_str(), mode);
    return p;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

size_t count_occurrences(const std::string& hay, const std::string& needle) {
    size_t n = 0;
    for (size_t pos = hay.find(needle); pos != std::string::npos;
         pos = hay.find(needle, pos + needle.size())) {
        ++n;
    }
    return n;
}

}  // namespace sp::test
