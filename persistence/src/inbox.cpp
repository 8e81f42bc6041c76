// The durable inbox's statements: one per batch of envelopes, never one per envelope; the hot
// ones (insert, claim) prepared once per connection.
#include "depot/persistence/inbox.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include "pg_native.hpp"
#include "prepared_statements.hpp"
#include "row_codec.hpp"

namespace depot::persistence {

namespace {

/// Runs `COPY ... FROM STDIN` with `data` on the session's connection; returns the rows copied.
std::size_t copy_in(soci::session& sql, const std::string& command, const std::string& data) {
  auto* conn = native_connection(sql);
  auto fail = [&](PGresult* result) {
    const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    auto error = classify(state ? state : "", PQerrorMessage(conn), sql);
    PQclear(result);
    while ((result = PQgetResult(conn)) != nullptr)
      PQclear(result);
    throw error;
  };
  auto* result = PQexec(conn, command.c_str());
  if (PQresultStatus(result) != PGRES_COPY_IN)
    fail(result);
  PQclear(result);
  if (PQputCopyData(conn, data.data(), static_cast<int>(data.size())) != 1 ||
      PQputCopyEnd(conn, nullptr) != 1)
    fail(nullptr);
  result = PQgetResult(conn);
  if (PQresultStatus(result) != PGRES_COMMAND_OK)
    fail(result);
  auto copied = std::strtoull(PQcmdTuples(result), nullptr, 10);
  PQclear(result);
  while ((result = PQgetResult(conn)) != nullptr)
    PQclear(result);
  return copied;
}

} // namespace

std::size_t inbox::insert(const std::vector<envelope>& envelopes, int sender_node,
                          const std::set<std::string>& also_notify) {
  if (envelopes.empty())
    return 0;
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::size_t inserted = 0;
    // Plain new envelopes (the common send) go through COPY, the cheapest insert Postgres has;
    // the rest (scheduled, put back, deduplicated) through the statement that handles them.
    if (auto rows = copy_rows(envelopes)) {
      inserted = copy_in(sql, conn_.sql().copy_incoming, *rows);
    } else {
      auto& st = conn_.prepared().insert_incoming();
      st.rows = rows_json(envelopes);
      st.window = static_cast<long long>(conn_.settings().dedup_window);
      st.inserted = 0;
      st.statement.execute(true);
      inserted = static_cast<std::size_t>(st.inserted);
    }
    std::set<std::string> ready;
    if (inserted > 0)
      for (const auto& e : envelopes)
        if (e.status == envelope_status::incoming)
          ready.insert(e.queue);
    ready.insert(also_notify.begin(), also_notify.end());
    notify_ready(ready, sender_node);
    return inserted;
  });
}

void inbox::notify_ready(const std::set<std::string>& queues, int sender_node) {
  if (queues.empty())
    return;
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto channel = conn_.notify_channel();
    auto payload = fmt::format("{}|{}", sender_node, fmt::join(queues, ","));
    sql << conn_.sql().notify, soci::use(channel), soci::use(payload);
  });
}

namespace {

/// RETURNING does not keep the subquery's order: claim order again.
std::vector<envelope> in_claim_order(std::vector<envelope> claimed) {
  std::sort(claimed.begin(), claimed.end(), [](const envelope& a, const envelope& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.seq < b.seq;
  });
  return claimed;
}

} // namespace

std::vector<envelope> inbox::claim(std::string_view queue, int limit, bool keyed,
                                   const std::optional<claim_position>& after) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto& st = conn_.prepared().claim(keyed);
    st.queue = std::string{queue};
    st.limit = limit;
    if (keyed)
      st.look_ahead = static_cast<int>(std::min<long long>(
        static_cast<long long>(limit) * claim_look_ahead, std::numeric_limits<int>::max()));
    st.continue_from(after);
    return in_claim_order(st.rows.fetch_all(st.statement));
  });
}

std::vector<envelope> inbox::claim_again(std::string_view queue,
                                         const std::vector<std::string>& ids) {
  if (ids.empty())
    return {};
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto& st = conn_.prepared().claim_again();
    st.queue = std::string{queue};
    st.look_ahead = claim_again_look_ahead;
    st.ids = uuid_array(ids);
    return in_claim_order(st.rows.fetch_all(st.statement));
  });
}

void inbox::put_back(const std::vector<envelope>& envelopes) {
  insert(envelopes);
}

bool inbox::resume_queue(std::string_view queue) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::string q{queue};
    long long resumed = 0;
    sql << conn_.sql().resume_queue, soci::use(q, "q"), soci::into(resumed);
    return resumed > 0;
  });
}

void inbox::pause_queue(std::string_view queue, micros until, std::string_view reason) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    std::string q{queue};
    auto why = postgres_text(reason);
    long long u = until;
    sql << conn_.sql().pause_queue, soci::use(q, "q"), soci::use(u, "u"), soci::use(why, "r");
  });
}

void inbox::record_breaker(std::string_view queue, std::string_view message_type, int node,
                           std::string_view state, micros until, std::string_view reason) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    std::string q{queue}, t{message_type}, s{state};
    if (s == "closed") {
      sql << conn_.sql().close_breaker, soci::use(q, "q"), soci::use(node, "n"), soci::use(t, "t");
      return;
    }
    auto why = postgres_text(reason);
    long long u = until;
    sql << conn_.sql().set_breaker, soci::use(q, "q"), soci::use(node, "n"), soci::use(t, "t"),
      soci::use(s, "s"), soci::use(u, "u"), soci::use(why, "r");
  });
}

std::vector<std::string> inbox::promote_due(int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    soci::rowset<std::string> rows = (sql.prepare << conn_.sql().promote_due, soci::use(limit));
    return std::vector<std::string>(rows.begin(), rows.end());
  });
}

std::size_t inbox::forget_received_ids(int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    soci::statement st = (sql.prepare << conn_.sql().forget_received_ids, soci::use(limit));
    st.execute(true);
    return static_cast<std::size_t>(st.get_affected_rows());
  });
}

} // namespace depot::persistence
