// Counts and checks for operators and start-up.
#include "depot/persistence/store_admin.hpp"

#include "pg_native.hpp"
#include "row_codec.hpp"
#include "statements.hpp"

namespace depot::persistence {

std::vector<queue_count> store_admin::counts() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<queue_count> result;
    soci::rowset<soci::row> rows = sql.prepare << conn_.sql().counts;
    for (const auto& r : rows)
      result.push_back({r.get<std::string>(0), r.get<std::string>(1), r.get<long long>(2)});
    return result;
  });
}

std::vector<queue_pause> store_admin::paused_queues() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<queue_pause> result;
    soci::rowset<soci::row> rows = sql.prepare << conn_.sql().paused_queues;
    for (const auto& r : rows)
      result.push_back({r.get<std::string>(0), r.get<long long>(1), r.get<std::string>(2)});
    return result;
  });
}

std::vector<breaker_row> store_admin::open_breakers() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<breaker_row> result;
    soci::rowset<soci::row> rows = sql.prepare << conn_.sql().open_breakers;
    for (const auto& r : rows)
      result.push_back({r.get<std::string>(0), r.get<int>(1), r.get<std::string>(2),
                        r.get<long long>(3), r.get<std::string>(4), r.get<std::string>(5)});
    return result;
  });
}

std::int64_t store_admin::ready(const std::vector<std::string>& queues, std::int64_t cap) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto q = text_array(queues);
    long long n = cap, count = 0;
    sql << conn_.sql().ready_capped, soci::use(q, "q"), soci::use(n, "n"), soci::into(count);
    return static_cast<std::int64_t>(count);
  });
}

std::int64_t store_admin::pending() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    long long n = 0;
    sql << conn_.sql().pending, soci::into(n);
    return static_cast<std::int64_t>(n);
  });
}

std::size_t store_admin::purge(const std::vector<std::string>& queues) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto names = text_array(queues);
    long long removed = 0;
    sql << conn_.sql().purge, soci::use(names, "q"), soci::into(removed);
    return static_cast<std::size_t>(removed);
  });
}

connection_budget store_admin::free_connections() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    long long max = 0, used = 0, reserved = 0;
    sql << conn_.sql().free_connections, soci::into(max), soci::into(used), soci::into(reserved);
    return connection_budget{max, used, max - reserved - used};
  });
}

} // namespace depot::persistence
