// The embedded PostgreSQL launcher against the system's server binaries: start in an empty
// directory, join, take over from a dead starter, restart on kept data. Needs no DEPOT_TEST_DB;
// every test makes its own directory under the temporary directory and removes it.
#include "depot/persistence/embedded_postgres.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <libpq-fe.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "depot/persistence/db_error.hpp"

using depot::persistence::db_error;
using depot::persistence::embedded_postgres;
using depot::persistence::failure_kind;
namespace fs = std::filesystem;

namespace {

/// A fresh, empty directory under the temporary directory, removed with everything in it (as
/// root, files of user postgres too) when the guard goes.
class temp_directory {
public:
  temp_directory() {
    std::mt19937_64 random{std::random_device{}()};
    path_ = fs::temp_directory_path() / fmt::format("depot-emb-{:x}", random());
    fs::create_directories(path_);
  }
  ~temp_directory() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_directory(const temp_directory&) = delete;
  temp_directory& operator=(const temp_directory&) = delete;

  [[nodiscard]] const fs::path& path() const { return path_; }

private:
  fs::path path_;
};

/// The first value `query` returns on `uri`, or nothing when connecting or the query fails.
std::optional<std::string> query(const std::string& uri, const std::string& sql) {
  auto conninfo = uri + "?connect_timeout=5";
  PGconn* conn = PQconnectdb(conninfo.c_str());
  std::optional<std::string> value;
  if (PQstatus(conn) == CONNECTION_OK) {
    PGresult* res = PQexec(conn, sql.c_str());
    auto status = PQresultStatus(res);
    if (status == PGRES_TUPLES_OK && PQntuples(res) > 0)
      value = PQgetvalue(res, 0, 0);
    else if (status == PGRES_COMMAND_OK)
      value = "";
    PQclear(res);
  }
  PQfinish(conn);
  return value;
}

/// True when no server runs on `dir` any more: no postmaster.pid, and `uri` refuses connections.
bool server_gone(const fs::path& dir, const std::string& uri) {
  return !fs::exists(dir / "data" / "postmaster.pid") && !query(uri, "SELECT 1");
}

std::string read_text(const fs::path& file) {
  std::ifstream in{file};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

TEST_CASE(
  "an embedded server starts in an empty directory, serves the depot database and stops "
  "with its owner") {
  temp_directory tmp;
  std::string uri;
  {
    embedded_postgres pg{tmp.path()};
    uri = pg.uri();
    CHECK(pg.owns_server());
    CHECK(pg.dir() == tmp.path());
    CHECK(pg.port() > 0);
    CHECK(pg.port() < 32768);
    CHECK(uri == fmt::format("postgresql://postgres@127.0.0.1:{}/depot", pg.port()));
    CHECK(query(uri, "SELECT 1") == "1");
    CHECK(query(uri, "SELECT current_database()") == "depot");
    CHECK(query(uri, "SHOW fsync") == "on");
    CHECK(std::stoi(read_text(tmp.path() / "port")) == pg.port());
    CHECK(fs::exists(tmp.path() / "data" / "server.log"));
  }
  CHECK(server_gone(tmp.path(), uri));
}

TEST_CASE(
  "a second embedded_postgres on the same directory joins the running server and leaves "
  "it running") {
  temp_directory tmp;
  auto dir = tmp.path() / "postgres"; // not there yet: created with its parents
  std::optional<embedded_postgres> first{std::in_place, dir};
  REQUIRE(first->owns_server());
  auto uri = first->uri();
  {
    embedded_postgres second{dir};
    CHECK_FALSE(second.owns_server());
    CHECK(second.uri() == uri);
    CHECK(second.port() == first->port());
    CHECK(query(second.uri(), "SELECT 1") == "1");
  }
  CHECK(query(uri, "SELECT 1") == "1");
  first.reset();
  CHECK(server_gone(dir, uri));
}

TEST_CASE("an embedded server directory kept from an earlier run is started again without initdb") {
  temp_directory tmp;
  std::string initdb_log;
  {
    embedded_postgres pg{tmp.path()};
    REQUIRE(query(pg.uri(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"));
    initdb_log = read_text(tmp.path() / "initdb.log");
  }
  embedded_postgres again{tmp.path()};
  CHECK(again.owns_server());
  CHECK(read_text(tmp.path() / "initdb.log") == initdb_log); // initdb did not run again
  CHECK(query(again.uri(), "SELECT v FROM kept") == "42");
}

TEST_CASE("two embedded_postgres started at once on an empty directory run one server") {
  temp_directory tmp;
  std::optional<embedded_postgres> a, b;
  std::thread other{[&] { b.emplace(tmp.path()); }};
  a.emplace(tmp.path());
  other.join();
  REQUIRE(b.has_value());
  CHECK(a->owns_server() != b->owns_server());
  CHECK(a->uri() == b->uri());
  CHECK(query(a->uri(), "SELECT 1") == "1");
  auto uri = a->uri();
  auto& owner = a->owns_server() ? a : b;
  auto& joiner = a->owns_server() ? b : a;
  joiner.reset(); // the server stays
  CHECK(query(uri, "SELECT 1") == "1");
  owner.reset();
  CHECK(server_gone(tmp.path(), uri));
}

TEST_CASE(
  "a server whose starter died without stopping it is taken over and stopped by the next "
  "embedded_postgres") {
  temp_directory tmp;
  auto child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Starts the server and dies without running the destructor, as a node killed with -9 would.
    try {
      embedded_postgres pg{tmp.path()};
      std::_Exit(pg.owns_server() ? 0 : 2);
    } catch (...) {
      std::_Exit(1);
    }
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  std::string uri;
  {
    embedded_postgres pg{tmp.path()};
    uri = pg.uri();
    CHECK(pg.owns_server());
    CHECK(query(uri, "SELECT 1") == "1");
  }
  CHECK(server_gone(tmp.path(), uri));
}

TEST_CASE("an embedded server directory pg_ctl cannot pass is refused with the fix named") {
  try {
    embedded_postgres pg{fs::temp_directory_path() / "depot-emb-$HOME"};
    FAIL("no error");
  } catch (const db_error& e) {
    CHECK(e.kind() == failure_kind::permanent);
    CHECK(std::string{e.what()}.find("DEPOT_DB") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(fs::temp_directory_path() / "depot-emb-$HOME"));
}
