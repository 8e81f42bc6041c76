// Child processes of depot-bench through posix_spawn and pipes (see child_process.hpp).
#include "child_process.hpp"

#include <cerrno>
#include <csignal>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace bench {

namespace {

int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

[[noreturn]] void fail(int error, const char* what) {
  throw std::system_error{error, std::generic_category(), what};
}

/// Owns the attributes posix_spawn takes, for the duration of one spawn.
struct spawn_setup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;

  spawn_setup(int child_stdin, int child_stdout) {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    // dup2 clears close-on-exec on the copies: the child keeps exactly these two ends.
    posix_spawn_file_actions_adddup2(&actions, child_stdin, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, child_stdout, STDOUT_FILENO);
    // The parent ignores SIGPIPE (a dead child must not kill it); the child starts clean.
    sigset_t defaults, none;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  }
  ~spawn_setup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
};

} // namespace

child_process::child_process(const std::vector<std::string>& args) {
  // The running binary itself, even if a rebuild has replaced the file since it started.
  const std::string program = "/proc/self/exe";
  const std::string name = "depot-bench";
  int to_child[2], from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0)
    fail(errno, "pipe2");
  if (pipe2(from_child, O_CLOEXEC) != 0) {
    auto error = errno;
    close(to_child[0]);
    close(to_child[1]);
    fail(error, "pipe2");
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(name.c_str()));
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int error = 0;
  {
    spawn_setup setup{to_child[0], from_child[1]};
    error =
      posix_spawn(&pid_, program.c_str(), &setup.actions, &setup.attributes, argv.data(), environ);
  }
  close(to_child[0]);
  close(from_child[1]);
  input_ = to_child[1];
  output_ = from_child[0];
  if (error != 0) {
    pid_ = -1;
    close(input_);
    close(output_);
    fail(error, "posix_spawn of depot-bench");
  }
}

child_process::~child_process() {
  kill();
  close_input();
  close(output_);
}

void child_process::write_line(std::string_view line) {
  std::string data{line};
  data += '\n';
  std::size_t done = 0;
  while (done < data.size()) {
    auto n = ::write(input_, data.data() + done, data.size() - done);
    if (n < 0 && errno != EINTR)
      fail(errno, "write to a child process");
    if (n > 0)
      done += static_cast<std::size_t>(n);
  }
}

std::optional<std::string> child_process::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto newline = pending_.find('\n'); newline != std::string::npos) {
      auto line = pending_.substr(0, newline);
      pending_.erase(0, newline + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return std::nullopt;
    pollfd ready{output_, POLLIN, 0};
    auto polled = poll(&ready, 1, static_cast<int>(left.count()));
    if (polled < 0 && errno != EINTR)
      fail(errno, "poll of a child process");
    if (polled <= 0)
      continue;
    char buffer[4096];
    auto n = ::read(output_, buffer, sizeof buffer);
    if (n < 0 && errno != EINTR)
      fail(errno, "read from a child process");
    if (n == 0)
      return std::nullopt;
    if (n > 0)
      pending_.append(buffer, static_cast<std::size_t>(n));
  }
}

void child_process::close_input() {
  if (input_ >= 0)
    close(input_);
  input_ = -1;
}

void child_process::kill() {
  if (pid_ < 0)
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_)
    exit_code_ = exit_code_of(status);
  pid_ = -1;
}

std::optional<int> child_process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pid_ < 0)
      return exit_code_;
    int status = 0;
    auto reaped = waitpid(pid_, &status, WNOHANG);
    if (reaped == pid_) {
      pid_ = -1;
      exit_code_ = exit_code_of(status);
      return exit_code_;
    }
    if (reaped < 0 && errno != EINTR)
      fail(errno, "waitpid");
    if (std::chrono::steady_clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
}

} // namespace bench
