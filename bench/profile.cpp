// Where the time and the bytes go: WAL written (from the server's LSN), CPU seconds of the local
// PostgreSQL server processes (from /proc; 0 when the server runs elsewhere) and of this process.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <libpq-fe.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.hpp"

namespace bench {

namespace {

struct proc_stat {
  long ppid = 0;
  double cpu_s = 0;      ///< utime + stime
  double children_s = 0; ///< cutime + cstime: children it reaped
};

bool read_stat(const std::filesystem::path& dir, proc_stat& out) {
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream in{dir / "stat"};
  std::string stat;
  if (!std::getline(in, stat))
    return false;
  auto close = stat.rfind(')');
  if (close == std::string::npos)
    return false;
  // Fields after the command: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
  std::istringstream rest{stat.substr(close + 2)};
  std::string field;
  double v[18] = {};
  for (int i = 3; i <= 17 && rest >> field; ++i)
    if (i >= 4)
      v[i] = std::stod(field);
  out.ppid = static_cast<long>(v[4]);
  out.cpu_s = (v[14] + v[15]) / ticks;
  out.children_s = (v[16] + v[17]) / ticks;
  return true;
}

/// CPU seconds of one PostgreSQL server: the postmaster, its live children, and the children it
/// already reaped. 0 when `backend` is not a local process.
double postgres_cpu_seconds(long backend) {
  proc_stat b;
  if (backend <= 0 || !read_stat(fmt::format("/proc/{}", backend), b))
    return 0;
  const long postmaster = b.ppid;
  proc_stat pm;
  if (!read_stat(fmt::format("/proc/{}", postmaster), pm))
    return 0;
  double total = pm.cpu_s + pm.children_s;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator{"/proc", ec}) {
    const auto name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    proc_stat p;
    if (read_stat(entry.path(), p) && p.ppid == postmaster)
      total += p.cpu_s;
  }
  return total;
}

double own_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

} // namespace

void settle(const std::string& db) {
  auto* c = PQconnectdb(db.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string error = PQerrorMessage(c);
    PQfinish(c);
    throw std::runtime_error{fmt::format("cannot connect: {}", error)};
  }
  auto* res = PQexec(c, "CHECKPOINT");
  bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  std::string error = PQresultErrorMessage(res);
  PQclear(res);
  PQfinish(c);
  if (!ok)
    throw std::runtime_error{
      fmt::format("CHECKPOINT failed (the benchmark needs a superuser "
                  "connection): {}",
                  error)};
}

resources resources::sample(const std::string& db) {
  resources r;
  auto* c = PQconnectdb(db.c_str());
  if (PQstatus(c) == CONNECTION_OK) {
    auto* res = PQexec(c, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint");
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
      r.wal_bytes = std::stoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    // This connection's backend is a child of the postmaster whose tree is counted.
    r.postgres_cpu_s = postgres_cpu_seconds(PQbackendPID(c));
  }
  PQfinish(c);
  r.bench_cpu_s = own_cpu_seconds();
  r.at_ns = now_ns();
  return r;
}

resources resources::operator-(const resources& earlier) const {
  return {wal_bytes - earlier.wal_bytes, postgres_cpu_s - earlier.postgres_cpu_s,
          bench_cpu_s - earlier.bench_cpu_s, at_ns - earlier.at_ns};
}

} // namespace bench
