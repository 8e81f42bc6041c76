// A private PostgreSQL server for a node run without --db/DEPOT_DB, from the system's binaries,
// with its data kept in a directory between runs. Never stops a server it did not start (or take
// over from a dead starter), and never runs initdb, pg_ctl or postgres as root.
#pragma once

#include <filesystem>
#include <string>

namespace depot::persistence {

/// A private PostgreSQL server in `dir`: data in dir/data (server log dir/data/server.log), port
/// remembered in dir/port, the starting process and its postmaster in dir/owner, Unix socket in
/// dir when its path is short enough, tool output in dir/initdb.log and dir/pg_ctl.log. It listens
/// on 127.0.0.1 only, with trust authentication for user postgres, and serves database `depot`
/// (created when missing).
///
/// The constructor starts the server (initdb first when dir/data has no PG_VERSION) or joins one
/// already running on dir/data. A joined server is left running on destruction, unless the
/// process that started it has died: then this object takes it over and stops it. Processes
/// starting on one directory at once are serialized by an flock on dir/lock: one starts, the
/// others join. As root the server tools run as user postgres (`runuser`), `dir` is chowned to
/// it and its parent directories are made reachable (o+x).
///
/// Blocks meanwhile: ~2 s on a cold start (initdb, CREATE DATABASE), ~0.3 s on a warm one.
class embedded_postgres {
public:
  /// Starts or joins the server in `dir` (created when missing; a relative path is taken from the
  /// working directory). Throws db_error (failure_kind::permanent) naming the fix when it cannot.
  explicit embedded_postgres(std::filesystem::path dir = default_dir());
  /// Stops the server (pg_ctl -m fast, falling back to -m immediate) when this object owns it;
  /// logs a warning when it cannot.
  ~embedded_postgres();
  embedded_postgres(const embedded_postgres&) = delete;
  embedded_postgres& operator=(const embedded_postgres&) = delete;

  /// `.depot/postgres`, relative to the working directory.
  [[nodiscard]] static std::filesystem::path default_dir();

  /// postgresql://postgres@127.0.0.1:PORT/depot
  [[nodiscard]] const std::string& uri() const { return uri_; }
  /// The directory given to the constructor, made absolute.
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  /// The server's TCP port on 127.0.0.1 (below 32768, outside Linux's ephemeral range).
  [[nodiscard]] int port() const { return port_; }
  /// True when this object started the server (or took it over from a dead starter) and stops it
  /// on destruction; false when it joined a server another live process runs.
  [[nodiscard]] bool owns_server() const { return owns_server_; }

private:
  std::filesystem::path dir_;
  std::string uri_;
  int port_ = 0;
  bool owns_server_ = false;
};

} // namespace depot::persistence
