// Starts, joins and stops a private PostgreSQL from the system's binaries (what
// scripts/lib/pg.sh does for the scripts). Runs tools with an argument vector, never through a
// shell; never runs them as root; never stops a server a live process of someone else owns.
#include "depot/persistence/embedded_postgres.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "depot/persistence/db_error.hpp"
#include "depot/runtime/log.hpp"

namespace depot::persistence {

namespace fs = std::filesystem;

namespace {

using namespace std::chrono_literals;

constexpr const char* install_fix = "install postgresql (scripts/install) or set --db or DEPOT_DB";
constexpr const char* db_fix = "set --db or DEPOT_DB to use another server";
constexpr int start_attempts = 5;
constexpr int lowest_random_port = 15432; // random ports: [15432, 31432), below Linux's
constexpr int random_ports = 16000;       // ephemeral range (32768 and up)
/// A Unix socket path holds at most 107 bytes; the socket is DIR/.s.PGSQL.PORT.
constexpr std::size_t max_socket_dir = 107 - 16;

[[noreturn]] void fail(const std::string& what) {
  throw db_error{failure_kind::permanent, "", what};
}

/// The last `count` lines of `file`, joined by " | " ("" when it cannot be read).
std::string tail(const fs::path& file, std::size_t count = 3) {
  std::ifstream in{file};
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.empty())
      continue;
    lines.push_back(line);
    if (lines.size() > count)
      lines.pop_front();
  }
  std::string joined;
  for (const auto& line : lines)
    joined += (joined.empty() ? "" : " | ") + line;
  return joined;
}

/// `file`'s tail as ": TAIL (see FILE)", for error messages.
std::string see(const fs::path& file) {
  auto t = tail(file);
  return t.empty() ? fmt::format(" (see {})", file.string())
                   : fmt::format(": {} (see {})", t, file.string());
}

/// The first executable `name` in PATH (plus the sbin directories root's tools live in).
std::optional<fs::path> find_program(const std::string& name) {
  const char* env = std::getenv("PATH");
  std::string path = env != nullptr ? env : "";
  path += ":/usr/sbin:/sbin";
  std::istringstream dirs{path};
  for (std::string d; std::getline(dirs, d, ':');) {
    if (d.empty())
      continue;
    auto candidate = fs::path{d} / name;
    if (::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return std::nullopt;
}

/// Runs `args` (args[0] an absolute path) in `/`, stdin from /dev/null, stdout and stderr to
/// `out_fd`; returns its wait status, or -1 when it could not be run. Only async-signal-safe calls
/// between fork and exec: the caller may have threads.
int spawn_and_wait(const std::vector<std::string>& args, int out_fd) {
  std::vector<char*> argv;
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0)
    return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    // The caller's signal mask and ignored signals would be inherited through exec (a CAF node
    // blocks or ignores some): give the tools, and the server pg_ctl starts, a clean slate.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
      sigaction(sig, &dfl, nullptr);
    if (::dup2(null_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0 ||
        ::chdir("/") != 0)
      ::_exit(127);
    ::close_range(3, ~0U, 0); // the caller's sockets and files stay with the caller
    ::execv(argv[0], argv.data());
    constexpr char msg[] = "depot: exec failed\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(null_fd);
  if (pid < 0)
    return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return -1;
  }
  return status;
}

bool succeeded(int status) {
  return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/// The stdout of `args` (a short output) when it exits with 0.
std::optional<std::string> output_of(const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return std::nullopt;
  // The output (a path) fits the pipe's buffer: read it once the child has exited.
  auto status = spawn_and_wait(args, fds[1]);
  ::close(fds[1]);
  std::string out;
  char buf[512];
  for (;;) {
    auto n = ::read(fds[0], buf, sizeof buf);
    if (n > 0)
      out.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  ::close(fds[0]);
  if (!succeeded(status))
    return std::nullopt;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
    out.pop_back();
  return out;
}

/// The directory holding initdb and pg_ctl: `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/VERSION/bin (Debian's layout) that has initdb.
fs::path server_bindir() {
  if (auto pg_config = find_program("pg_config")) {
    if (auto dir = output_of({pg_config->string(), "--bindir"}))
      if (::access((fs::path{*dir} / "initdb").c_str(), X_OK) == 0)
        return *dir;
  }
  std::optional<fs::path> newest;
  int newest_version = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator{"/usr/lib/postgresql", ec}) {
    auto name = entry.path().filename().string();
    char* end = nullptr;
    auto version = std::strtol(name.c_str(), &end, 10);
    if (end == name.c_str() || version <= newest_version)
      continue;
    if (::access((entry.path() / "bin" / "initdb").c_str(), X_OK) == 0) {
      newest = entry.path() / "bin";
      newest_version = static_cast<int>(version);
    }
  }
  if (!newest)
    fail(fmt::format("no PostgreSQL server binaries (initdb) found: {}", install_fix));
  return *newest;
}

/// The user the server tools run as when this process is root.
struct postgres_user {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

postgres_user find_postgres_user() {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r("postgres", &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr)
    fail(fmt::format("user postgres is missing (the server tools refuse to run as root): {}",
                     install_fix));
  postgres_user user{pw.pw_uid, pw.pw_gid, std::vector<gid_t>(64)};
  int count = static_cast<int>(user.groups.size());
  if (::getgrouplist(pw.pw_name, pw.pw_gid, user.groups.data(), &count) < 0) {
    user.groups.resize(static_cast<std::size_t>(count));
    ::getgrouplist(pw.pw_name, pw.pw_gid, user.groups.data(), &count);
  }
  user.groups.resize(static_cast<std::size_t>(std::max(count, 0)));
  return user;
}

/// Makes every directory above `dir` searchable by `user` (o+x where its owner and group bits do
/// not already let it through), as pg.sh's _depot_pg_reachable does.
void make_reachable(const fs::path& dir, const postgres_user& user) {
  for (auto p = dir.parent_path();; p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) {
      bool in_group =
        std::find(user.groups.begin(), user.groups.end(), st.st_gid) != user.groups.end();
      auto bit = st.st_uid == user.uid ? S_IXUSR : in_group ? S_IXGRP : S_IXOTH;
      if ((st.st_mode & bit) == 0 && ::chmod(p.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0)
        fail(fmt::format("cannot make {} reachable by user postgres: {}; {}", p.string(),
                         std::strerror(errno), db_fix));
    }
    if (p == p.root_path() || p.empty())
      break;
  }
}

/// A process's state letter from /proc/PID/stat when its command is `comm` ('\0' otherwise).
char process_state(long pid, const std::string& comm) {
  std::ifstream in{fmt::format("/proc/{}/stat", pid)};
  std::string stat;
  std::getline(in, stat);
  auto prefix = fmt::format("{} ({}) ", pid, comm);
  if (stat.size() <= prefix.size() || stat.compare(0, prefix.size(), prefix) != 0)
    return '\0';
  return stat[prefix.size()];
}

/// True while process `pid` exists and is not a zombie.
bool process_alive(long pid) {
  std::ifstream in{fmt::format("/proc/{}/stat", pid)};
  std::string stat;
  std::getline(in, stat);
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z' &&
         stat[close + 2] != 'X';
}

/// The postmaster running on a data directory, from its postmaster.pid.
struct postmaster {
  long pid = 0;
  int port = 0;
};

/// The postmaster of `data` when its postmaster.pid names a live (not zombie) postgres process.
std::optional<postmaster> live_postmaster(const fs::path& data) {
  std::ifstream in{data / "postmaster.pid"};
  std::string pid_line, ignored, port_line;
  if (!std::getline(in, pid_line) || !std::getline(in, ignored) || !std::getline(in, ignored))
    return std::nullopt;
  std::getline(in, port_line);
  char* end = nullptr;
  auto pid = std::strtol(pid_line.c_str(), &end, 10);
  if (pid <= 0 || end == pid_line.c_str() || *end != '\0')
    return std::nullopt;
  auto state = process_state(pid, "postgres");
  if (state == '\0' || state == 'Z' || state == 'X')
    return std::nullopt;
  return postmaster{pid, std::atoi(port_line.c_str())};
}

/// True when nothing is bound to (or listening on) 127.0.0.1:`port`: binds it the way the
/// server will (SO_REUSEADDR, so connections in TIME_WAIT do not count).
bool port_free(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return free;
}

/// `preferred` when it is free and below 32768, else a free random port in [15432, 31432).
int pick_port(int preferred) {
  if (preferred >= 1024 && preferred < 32768 && port_free(preferred))
    return preferred;
  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<int> ports{lowest_random_port,
                                           lowest_random_port + random_ports - 1};
  for (int i = 0; i < 100; ++i) {
    auto port = ports(random);
    if (port_free(port))
      return port;
  }
  fail(fmt::format("no free TCP port below 32768 on 127.0.0.1; {}", db_fix));
}

/// `text` as one shell word: pg_ctl hands -o to /bin/sh.
std::string shell_quoted(const std::string& text) {
  std::string quoted = "'";
  for (char c : text)
    quoted += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
  return quoted + "'";
}

int read_int(const fs::path& file) {
  std::ifstream in{file};
  int value = 0;
  in >> value;
  return in ? value : 0;
}

/// Writes `text` to `file` through a temporary file and a rename, so readers see all or nothing.
void write_file(const fs::path& file, const std::string& text) {
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc};
    out << text;
    if (!out)
      fail(fmt::format("cannot write {}; {}", tmp.string(), db_fix));
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec)
    fail(fmt::format("cannot write {}: {}; {}", file.string(), ec.message(), db_fix));
}

/// The process that started the server and the postmaster it started, from dir/owner.
struct owner_record {
  long owner = 0;
  long postmaster = 0;
};

owner_record read_owner(const fs::path& file) {
  std::ifstream in{file};
  owner_record r;
  in >> r.owner >> r.postmaster;
  return in ? r : owner_record{};
}

/// An exclusive flock on dir/lock, held while deciding whether to start, starting and stopping.
class dir_lock {
public:
  explicit dir_lock(const fs::path& file) {
    // O_CLOEXEC: the server pg_ctl starts must not inherit the lock and hold it forever.
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      fail(fmt::format("cannot open {}: {}; {}", file.string(), std::strerror(errno), db_fix));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(fd_);
        fail(fmt::format("cannot lock {}: {}; {}", file.string(), std::strerror(errno), db_fix));
      }
    }
  }
  ~dir_lock() { ::close(fd_); }
  dir_lock(const dir_lock&) = delete;
  dir_lock& operator=(const dir_lock&) = delete;

private:
  int fd_ = -1;
};

/// Runs the server tools of one directory: as user postgres (through runuser) when root, each
/// with its output in a log file of the directory.
class server_tools {
public:
  explicit server_tools(fs::path dir) : dir_(std::move(dir)), bindir_(server_bindir()) {
    if (::geteuid() != 0)
      return;
    auto runuser = find_program("runuser");
    if (!runuser)
      fail(
        fmt::format("runuser not found (the server tools refuse to run as root): {}", install_fix));
    runuser_ = *runuser;
    user_ = find_postgres_user();
  }

  /// Root only: the server's user owns the directory and can reach it.
  void prepare_directory() const {
    if (!user_)
      return;
    if (::chown(dir_.c_str(), user_->uid, user_->gid) != 0)
      fail(fmt::format("cannot chown {} to postgres: {}; {}", dir_.string(), std::strerror(errno),
                       db_fix));
    make_reachable(dir_, *user_);
  }

  /// Runs `tool` of the server's bindir with `args`, its output appended to dir/`log`. True when
  /// it exited with 0.
  bool run(const std::string& tool, const std::vector<std::string>& args,
           const std::string& log) const {
    std::vector<std::string> argv;
    if (user_)
      argv = {runuser_.string(), "-u", "postgres", "--"};
    argv.push_back((bindir_ / tool).string());
    argv.insert(argv.end(), args.begin(), args.end());
    auto log_file = dir_ / log;
    int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
      fail(fmt::format("cannot write {}: {}; {}", log_file.string(), std::strerror(errno), db_fix));
    auto header = fmt::format("--- {}\n", fmt::join(argv, " "));
    [[maybe_unused]] auto n = ::write(fd, header.data(), header.size());
    auto status = spawn_and_wait(argv, fd);
    ::close(fd);
    return succeeded(status);
  }

  /// pg_ctl stop, fast and then immediate; true when the server stopped.
  bool stop(const fs::path& data) const {
    return run("pg_ctl", {"-D", data.string(), "-m", "fast", "-w", "stop"}, "pg_ctl.log") ||
           run("pg_ctl", {"-D", data.string(), "-m", "immediate", "-w", "stop"}, "pg_ctl.log");
  }

private:
  fs::path dir_;
  fs::path bindir_;
  fs::path runuser_;
  std::optional<postgres_user> user_;
};

/// A libpq connection, finished when it goes.
struct pg_connection {
  explicit pg_connection(const std::string& conninfo) : conn(PQconnectdb(conninfo.c_str())) {}
  ~pg_connection() { PQfinish(conn); }
  pg_connection(const pg_connection&) = delete;
  pg_connection& operator=(const pg_connection&) = delete;

  PGconn* conn;
};

/// Creates database `depot` unless it exists (a concurrent creator is fine). The server may
/// still be starting when it was joined: connecting is retried for 10 s while it runs.
void create_depot_database(int port, const fs::path& data) {
  auto conninfo =
    fmt::format("postgresql://postgres@127.0.0.1:{}/postgres?connect_timeout=10", port);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  std::optional<pg_connection> c;
  for (;;) {
    c.emplace(conninfo);
    if (PQstatus(c->conn) == CONNECTION_OK)
      break;
    if (std::chrono::steady_clock::now() >= deadline || !live_postmaster(data))
      fail(fmt::format("cannot connect to the private PostgreSQL at 127.0.0.1:{}: {}{}; {}", port,
                       PQerrorMessage(c->conn), see(data / "server.log"), db_fix));
    c.reset();
    std::this_thread::sleep_for(200ms);
  }
  auto* res = PQexec(c->conn, "SELECT 1 FROM pg_database WHERE datname = 'depot'");
  bool exists = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
  PQclear(res);
  if (exists)
    return;
  res = PQexec(c->conn, "CREATE DATABASE depot");
  std::string state;
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    state = s != nullptr ? s : "";
  }
  std::string message = PQerrorMessage(c->conn);
  PQclear(res);
  // 42P04 duplicate_database; 23505 when a concurrent CREATE DATABASE won the catalog row.
  if (!state.empty() && state != "42P04" && state != "23505")
    throw db_error{failure_kind::permanent, state,
                   fmt::format("cannot create database depot: {}; {}", message, db_fix)};
}

} // namespace

fs::path embedded_postgres::default_dir() {
  return fs::path{".depot"} / "postgres";
}

embedded_postgres::embedded_postgres(fs::path dir) {
  std::error_code ec;
  dir_ = fs::absolute(dir, ec).lexically_normal();
  if (ec)
    fail(fmt::format("cannot locate {}: {}; {}", dir.string(), ec.message(), db_fix));
  if (!dir_.has_filename())
    dir_ = dir_.parent_path();
  // pg_ctl puts the data directory and log between double quotes in a shell command.
  if (dir_.string().find_first_of("\"$`\\\n") != std::string::npos)
    fail(
      fmt::format("the PostgreSQL directory {} holds a character pg_ctl cannot pass "
                  "(\" $ ` \\ or a line break): run from another directory or {}",
                  dir_.string(), db_fix));
  fs::create_directories(dir_, ec);
  if (ec)
    fail(fmt::format("cannot create {}: {}; {}", dir_.string(), ec.message(), db_fix));
  server_tools tools{dir_};
  auto data = dir_ / "data";
  dir_lock lock{dir_ / "lock"};
  tools.prepare_directory();

  if (auto running = live_postmaster(data)) {
    // Another process started it. When that process died without stopping it, take it over.
    auto record = read_owner(dir_ / "owner");
    if (record.postmaster == running->pid && record.owner != ::getpid() &&
        !process_alive(record.owner)) {
      write_file(dir_ / "owner", fmt::format("{} {}\n", ::getpid(), running->pid));
      owns_server_ = true;
    }
    port_ = running->port;
    uri_ = fmt::format("postgresql://postgres@127.0.0.1:{}/depot", port_);
    create_depot_database(port_, data);
    depot::log(log_level::info, "PostgreSQL in {}: {} ({})", dir_.string(), uri_,
               owns_server_ ? "taken over from a process that died" : "joined a running server");
    return;
  }

  // Only a data directory known to lack PG_VERSION is removed, not one that could not be read.
  auto version = fs::status(data / "PG_VERSION", ec);
  if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
    fail(fmt::format("cannot read {}: {}; {}", data.string(), ec.message(), db_fix));
  if (!fs::exists(version)) {
    // initdb into a scratch directory renamed when complete: an interrupted initdb leaves no
    // data directory that looks usable.
    auto scratch = dir_ / "data.init";
    fs::remove_all(data, ec);
    fs::remove_all(scratch, ec);
    depot::log(log_level::info, "PostgreSQL: creating a data directory in {} (initdb)",
               data.string());
    if (!tools.run(
          "initdb",
          {"-D", scratch.string(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"},
          "initdb.log"))
      fail(fmt::format("initdb failed in {}{}; {}", scratch.string(), see(dir_ / "initdb.log"),
                       install_fix));
    fs::rename(scratch, data, ec);
    if (ec)
      fail(fmt::format("cannot rename {}: {}; {}", scratch.string(), ec.message(), db_fix));
    if (int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }

  // Lock files of a dead server: their pids may be zombies, or reused.
  fs::remove(data / "postmaster.pid", ec);
  for (const auto& entry : fs::directory_iterator{dir_, ec}) {
    auto name = entry.path().filename().string();
    if (name.starts_with(".s.PGSQL.") && name.ends_with(".lock"))
      fs::remove(entry.path(), ec);
  }

  auto socket_dir = dir_.string().size() <= max_socket_dir ? dir_.string() : std::string{};
  auto preferred = read_int(dir_ / "port");
  for (int attempt = 1; attempt <= start_attempts && port_ == 0; ++attempt) {
    auto port = pick_port(preferred);
    auto options =
      fmt::format("-p {} -k {} -c listen_addresses=127.0.0.1", port, shell_quoted(socket_dir));
    if (tools.run(
          "pg_ctl",
          {"-D", data.string(), "-l", (data / "server.log").string(), "-w", "-o", options, "start"},
          "pg_ctl.log")) {
      port_ = port;
      break;
    }
    // The port was taken meanwhile, or the server failed for good (then every attempt fails).
    if (live_postmaster(data))
      break; // pg_ctl gave up waiting on a server that still runs: do not start a second one
    preferred = 0;
    std::this_thread::sleep_for(attempt * 100ms);
  }
  auto started = live_postmaster(data);
  if (port_ == 0 || !started) {
    if (started)
      tools.stop(data);
    fail(fmt::format("PostgreSQL did not start in {}{}; {}", data.string(),
                     see(data / "server.log"), db_fix));
  }
  owns_server_ = true;
  uri_ = fmt::format("postgresql://postgres@127.0.0.1:{}/depot", port_);
  try {
    write_file(dir_ / "port", fmt::format("{}\n", port_));
    write_file(dir_ / "owner", fmt::format("{} {}\n", ::getpid(), started->pid));
    create_depot_database(port_, data);
  } catch (...) {
    tools.stop(data);
    fs::remove(dir_ / "owner", ec);
    throw;
  }
  depot::log(log_level::info, "PostgreSQL in {}: {} (started; stopped on exit)", dir_.string(),
             uri_);
}

embedded_postgres::~embedded_postgres() {
  if (!owns_server_)
    return;
  try {
    auto data = dir_ / "data";
    dir_lock lock{dir_ / "lock"};
    auto running = live_postmaster(data);
    auto record = read_owner(dir_ / "owner");
    // Stop only the server this object started or took over, not one started after it died.
    if (!running || running->pid != record.postmaster)
      return;
    server_tools tools{dir_};
    if (!tools.stop(data)) {
      depot::log(log_level::warning, "could not stop PostgreSQL in {}{}", dir_.string(),
                 see(dir_ / "pg_ctl.log"));
      return;
    }
    std::error_code ec;
    fs::remove(dir_ / "owner", ec);
  } catch (const std::exception& e) {
    depot::log(log_level::warning, "could not stop PostgreSQL in {}: {}", dir_.string(), e.what());
  }
}

} // namespace depot::persistence
