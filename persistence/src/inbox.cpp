// The durable inbox's statements: one per batch of envelopes, never one per envelope; the hot
// ones (insert, claim, begin_handling) prepared once per connection.
#include "depot/persistence/inbox.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "depot/persistence/names.hpp"
#include "pg_native.hpp"
#include "prepared_statements.hpp"
#include "row_codec.hpp"

namespace depot::persistence {

std::size_t inbox::insert(const std::vector<envelope>& envelopes, int sender_node) {
  if (envelopes.empty())
    return 0;
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto& st = conn_.prepared().insert_incoming();
    st.rows = rows_json(envelopes);
    st.inserted = 0;
    st.statement.execute(true);
    std::set<std::string> ready;
    for (const auto& e : envelopes)
      if (e.status == envelope_status::incoming)
        ready.insert(e.queue);
    if (st.inserted > 0 && !ready.empty()) {
      // One notification per transaction and queue set; Postgres folds duplicates.
      auto channel = conn_.notify_channel();
      auto payload = fmt::format("{}|{}", sender_node, fmt::join(ready, ","));
      sql << conn_.sql().notify, soci::use(channel), soci::use(payload);
    }
    return static_cast<std::size_t>(st.inserted);
  });
}

std::vector<envelope> inbox::claim(std::string_view queue, int owner, int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto& st = conn_.prepared().claim();
    st.owner = owner;
    st.queue = std::string{queue};
    st.limit = limit;
    // Rows come in chunks: memory follows what was claimed, never the limit.
    st.resize(std::clamp<std::size_t>(static_cast<std::size_t>(std::max(limit, 1)), 1,
                                      claim_statement::chunk));
    std::vector<envelope> result;
    soci::transaction tr{sql};
    // A claim lost in a crash only leaves the row unowned, as recovery would: no fsync needed.
    sql << "SET LOCAL synchronous_commit = off";
    for (bool more = st.statement.execute(true); more; more = st.statement.fetch()) {
      for (std::size_t i = 0; i < st.ids.size(); ++i) {
        auto& e = result.emplace_back();
        e.id = std::move(st.ids[i]);
        e.queue = std::move(st.queues[i]);
        e.message_type = std::move(st.types[i]);
        e.body = std::move(st.bodies[i]);
        e.headers = parse_headers(st.headers[i]);
        e.execution_time = st.execution_times[i];
        e.deliver_by = st.deliver_bys[i];
        e.attempts = st.attempts[i];
        e.priority = st.priorities[i];
        e.received_at = st.received_ats[i];
        e.tenant = std::move(st.tenants[i]);
      }
    }
    tr.commit();
    // RETURNING does not keep the subquery's order.
    std::stable_sort(result.begin(), result.end(), [](const envelope& a, const envelope& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.received_at < b.received_at;
    });
    return result;
  });
}

std::vector<std::string> inbox::begin_handling(const std::vector<std::string>& ids, int owner) {
  if (ids.empty())
    return {};
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto& st = conn_.prepared().begin_handling();
    st.window = static_cast<long long>(conn_.settings().dedup_window);
    st.ids = uuid_array(ids);
    st.owner = owner;
    st.locked.resize(ids.size());
    // SOCI leaves the vector untouched when no row comes back.
    if (!st.statement.execute(true))
      return std::vector<std::string>{};
    return st.locked;
  });
}

void inbox::mark_expired(const std::vector<std::string>& ids) {
  if (ids.empty())
    return;
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    sql << conn_.sql().mark_expired, soci::use(id_array);
  });
}

void inbox::retry_at(const std::string& id, micros at) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto when = static_cast<long long>(at);
    sql << conn_.sql().retry_at, soci::use(when, "at"), soci::use(id, "id");
  });
}

void inbox::requeue(const std::vector<std::string>& ids, int owner) {
  give_back(ids, owner, names::status::handled);
}

void inbox::release(const std::vector<std::string>& ids, int owner) {
  give_back(ids, owner, names::status::incoming);
}

void inbox::give_back(const std::vector<std::string>& ids, int owner,
                      std::string_view from_status) {
  if (ids.empty())
    return;
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    auto from = std::string{from_status};
    sql << conn_.sql().give_back, soci::use(id_array, "ids"), soci::use(owner, "o"),
      soci::use(from, "s");
  });
}

std::vector<std::string> inbox::promote_due(int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    soci::rowset<std::string> rows = (sql.prepare << conn_.sql().promote_due, soci::use(limit));
    return std::vector<std::string>(rows.begin(), rows.end());
  });
}

std::size_t inbox::remove_expired_ids(int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    soci::statement st = (sql.prepare << conn_.sql().remove_expired_ids, soci::use(limit));
    st.execute(true);
    return static_cast<std::size_t>(st.get_affected_rows());
  });
}

} // namespace depot::persistence
