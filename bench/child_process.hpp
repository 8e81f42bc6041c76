// A child process of depot-bench: this same binary (/proc/self/exe) run with a `--role=...`, its
// stdin and stdout connected to the parent by pipes (its stderr is the parent's). Started with
// posix_spawn, which is safe in a process that already runs threads (CAF's, a node's) where a
// fork that goes on running code would not be.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace bench {

class child_process {
public:
  /// Starts depot-bench with `args` (the program name excluded). Throws std::system_error.
  explicit child_process(const std::vector<std::string>& args);
  /// Kills the child if it still runs, and reaps it.
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// Writes `line` and a newline to the child's stdin. Throws std::system_error when the child
  /// is gone.
  void write_line(std::string_view line);
  /// The next line the child wrote to its stdout (newline removed); nullopt at its end (the child
  /// exited) or after `timeout`.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  /// Closes the child's stdin: the roles stop when they read its end.
  void close_input();
  /// Kills the child with SIGKILL and reaps it; nothing when it already exited.
  void kill();
  /// Waits up to `timeout` for the child to exit; its exit code (128 + signal when a signal ended
  /// it), nullopt while it still runs.
  std::optional<int> wait(std::chrono::milliseconds timeout);

private:
  pid_t pid_ = -1;               ///< -1 once reaped
  std::optional<int> exit_code_; ///< once reaped
  int input_ = -1;               ///< the write end of the child's stdin
  int output_ = -1;              ///< the read end of the child's stdout
  std::string pending_;          ///< read from output_, not yet returned as a line
};

} // namespace bench
