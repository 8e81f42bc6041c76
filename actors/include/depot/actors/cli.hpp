// The command line every node binary shares: run, db apply, db status, describe, send,
// storage counts, health; applications add their own commands. Options go through CAF's
// option machinery (command line, config file) and DEPOT_* environment variables.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "depot/runtime/routing.hpp"
#include "depot/runtime/settings.hpp"

namespace caf {
class actor_system_config;
}

namespace soci {
class session;
}

namespace depot {

/// Declares a command's own options (bound like every other option, without DEPOT_ variables).
class command_options {
public:
  virtual ~command_options() = default;
  virtual void add(std::string& ref, const std::string& name, const std::string& help) = 0;
  virtual void add(std::int64_t& ref, const std::string& name, const std::string& help) = 0;
  virtual void add(bool& ref, const std::string& name, const std::string& help) = 0;
};

/// What a command runs with.
struct command_env {
  const node_settings& settings;
  const routing& app;
  const std::vector<std::string>& args; ///< positional arguments after the command's words
  /// CAF's configuration as parsed from the command line and config file: give it to a node
  /// (node{app, settings, config}) so that its actor system runs with it.
  caf::actor_system_config& config;

  /// A new session on the node's database, for the application's own tables. Throws when it
  /// cannot connect, naming the option to fix.
  [[nodiscard]] std::unique_ptr<soci::session> open_session() const;
};

/// A subcommand of a node binary.
struct command {
  std::vector<std::string> words;                ///< e.g. {"seed"} or {"db", "apply"}
  std::string arguments;                         ///< usage of positional arguments
  std::string summary;                           ///< one line for --help
  std::function<void(command_options&)> options; ///< the command's own options (may be empty)
  std::function<int(command_env&)> run;          ///< returns the exit code
};

/// Exit codes of every node binary.
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int failure = 1; ///< the command could not do its work (database, input)
inline constexpr int usage = 2;   ///< the command line is wrong
} // namespace exit_code

/// The command line of a node binary.
class cli {
public:
  cli(std::string program, routing& app);
  ~cli();

  /// Adds an application command.
  void add_command(command c);
  /// Adds work `db apply` does after depot's schema, in the same transaction (the
  /// application's own tables).
  void on_db_apply(std::function<void(soci::session&)> f);

  /// Adds declarations that depend on the options (e.g. Kafka routes only when --kafka is set):
  /// `f` runs once the options are parsed, before the command.
  void on_settings(std::function<void(routing&, const node_settings&)> f);

  /// Parses argv, runs the command, returns the exit code. Prints a one-line reason on errors.
  int run(int argc, char** argv);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace depot
