// The saga tables' statements. A table per saga type, so its statements are built from the
// table's name; the lists a saga keeps (compensations, timeouts, steps) travel as one JSON
// object and are stored as jsonb columns of their own, for operators to query.
#include "depot/persistence/saga_store.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "depot/persistence/names.hpp"
#include "pg_native.hpp"

namespace depot::persistence {

/// The lists of a saga row, as they travel to and from Postgres.
struct saga_lists {
  std::vector<saga_compensation> compensations;
  std::vector<saga_timeout> timeouts;
  std::vector<saga_step> steps;
};
DEPOT_MESSAGE(saga_lists, "depot.saga-lists", compensations, timeouts, steps)

namespace {

// Integer microseconds since the epoch of timestamptz `column`.
std::string micros_of(std::string_view column) {
  return fmt::format("coalesce((extract(epoch from {}) * 1000000)::bigint, 0)", column);
}

bool finished(saga_status s) {
  return s == saga_status::completed || s == saga_status::compensated;
}

} // namespace

bool saga_store::cancel_scheduled(const std::string& id) {
  if (!is_uuid(id))
    return false;
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto schema = conn_.settings().schema;
    long long removed = 0;
    // A claimed envelope is locked by the transaction handling it: too late to cancel.
    sql << fmt::format(
      "WITH i AS (DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE id = :id::uuid FOR "
      "UPDATE SKIP LOCKED) RETURNING 1), o AS (DELETE FROM {1} WHERE id = :o::uuid AND "
      "not_before > now() RETURNING 1) SELECT (SELECT count(*) FROM i) + (SELECT count(*) FROM o)",
      names::qualified(schema, names::table::incoming),
      names::qualified(schema, names::table::outgoing)),
      soci::use(id, "id"), soci::use(id, "o"), soci::into(removed);
    return removed > 0;
  });
}

std::optional<saga_row> saga_store::read(const saga_definition& saga, const std::string& id,
                                         bool lock) {
  auto& sql = conn_.session();
  return guarded(sql, [&]() -> std::optional<saga_row> {
    saga_row row;
    std::string status, lists;
    long long version = 0, created = 0, updated = 0, keep_until = 0;
    sql << fmt::format(
      "SELECT state::text, version, status, coalesce(reason, ''), json_build_object("
      "'compensations', compensations, 'timeouts', timeouts, 'steps', steps)::text, {}, {}, {} "
      "FROM {} WHERE id = :id{}",
      micros_of("created"), micros_of("updated"), micros_of("keep_until"),
      names::qualified(conn_.settings().schema, saga.table), lock ? " FOR UPDATE" : ""),
      soci::use(id), soci::into(row.state), soci::into(version), soci::into(status),
      soci::into(row.reason), soci::into(lists), soci::into(created), soci::into(updated),
      soci::into(keep_until);
    if (!sql.got_data())
      return std::nullopt;
    row.id = id;
    row.version = version;
    row.status = saga_status_from(status).value_or(saga_status::running);
    auto l = from_json<saga_lists>(lists);
    row.compensations = std::move(l.compensations);
    row.timeouts = std::move(l.timeouts);
    row.steps = std::move(l.steps);
    row.created = created;
    row.updated = updated;
    row.keep_until = keep_until;
    return row;
  });
}

std::optional<saga_row> saga_store::load_saga(const saga_definition& saga, const std::string& id) {
  return read(saga, id, true);
}

std::optional<saga_row> saga_store::find(const saga_definition& saga, const std::string& id) {
  return read(saga, id, false);
}

void saga_store::save_saga(const saga_definition& saga, saga_row& row) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto table = names::qualified(conn_.settings().schema, saga.table);
    std::string status = to_string(row.status);
    auto lists = to_json(saga_lists{row.compensations, row.timeouts, row.steps});
    long long keep = finished(row.status) ? conn_.settings().saga_retention : -1;
    long long version = row.version;
    const auto values =
      "FROM (SELECT :lists::jsonb AS l, now() + nullif(:keep::bigint, -1) * interval '1 "
      "microsecond' AS k) x";
    if (row.version == 0) {
      sql << fmt::format(
        "INSERT INTO {} (id, state, version, status, reason, compensations, timeouts, steps, "
        "keep_until) SELECT :id, :state::jsonb, 1, :status, nullif(:reason, ''), "
        "l->'compensations', l->'timeouts', l->'steps', k {}",
        table, values),
        soci::use(row.id, "id"), soci::use(row.state, "state"), soci::use(status, "status"),
        soci::use(row.reason, "reason"), soci::use(lists, "lists"), soci::use(keep, "keep");
      row.version = 1;
      return;
    }
    long long saved = 0;
    sql << fmt::format(
      "UPDATE {} SET state = :state::jsonb, version = version + 1, status = :status, reason = "
      "nullif(:reason, ''), compensations = l->'compensations', timeouts = l->'timeouts', steps "
      "= l->'steps', updated = now(), keep_until = k {} WHERE id = :id AND version = :version "
      "RETURNING version",
      table, values),
      soci::use(row.state, "state"), soci::use(status, "status"), soci::use(row.reason, "reason"),
      soci::use(lists, "lists"), soci::use(keep, "keep"), soci::use(row.id, "id"),
      soci::use(version, "version"), soci::into(saved);
    if (!sql.got_data())
      throw db_error{failure_kind::transient, "40001",
                     fmt::format("saga {} {} changed since it was loaded (version {})", saga.name,
                                 row.id, row.version)};
    row.version = saved;
  });
}

void saga_store::create_tables(const std::deque<saga_definition>& sagas) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    for (const auto& saga : sagas) {
      auto table = names::qualified(conn_.settings().schema, saga.table);
      sql << fmt::format(
        "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, state jsonb NOT NULL, version "
        "bigint NOT NULL, status text NOT NULL CHECK (status IN ('running', 'completed', "
        "'compensating', 'compensated', 'stuck')), reason text, compensations jsonb NOT NULL "
        "DEFAULT '[]', timeouts jsonb NOT NULL DEFAULT '[]', steps jsonb NOT NULL DEFAULT '[]', "
        "created timestamptz NOT NULL DEFAULT now(), updated timestamptz NOT NULL DEFAULT now(), "
        "keep_until timestamptz)",
        table);
      sql << fmt::format("CREATE INDEX IF NOT EXISTS {0}_status ON {1} (status, updated)",
                         saga.table, table);
      sql << fmt::format(
        "CREATE INDEX IF NOT EXISTS {0}_kept ON {1} (keep_until) WHERE keep_until IS NOT NULL",
        saga.table, table);
      sql << fmt::format("COMMENT ON TABLE {} IS '{}'", table,
                         fmt::format("saga {}, state {}", saga.name, saga.state_type));
    }
  });
}

std::vector<std::string> saga_store::missing_tables(const std::deque<saga_definition>& sagas) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<std::string> missing;
    for (const auto& saga : sagas) {
      long long n = 0;
      sql << "SELECT count(*) FROM information_schema.tables WHERE table_schema = :s AND "
             "table_name = :t",
        soci::use(conn_.settings().schema), soci::use(saga.table), soci::into(n);
      if (n == 0)
        missing.push_back(saga.name);
    }
    return missing;
  });
}

std::vector<saga_summary> saga_store::list(const std::deque<saga_definition>& sagas,
                                           const saga_definition* type,
                                           std::optional<saga_status> status, int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<saga_summary> all;
    std::string wanted = status ? to_string(*status) : "";
    for (const auto& saga : sagas) {
      if (type != nullptr && type != &saga)
        continue;
      soci::rowset<soci::row> rows =
        (sql.prepare << fmt::format("SELECT id, status, coalesce(reason, ''), {}, {}, "
                                    "jsonb_array_length(compensations) FROM {} WHERE :st = '' "
                                    "OR status = :st2 ORDER BY updated DESC LIMIT :n",
                                    micros_of("created"), micros_of("updated"),
                                    names::qualified(conn_.settings().schema, saga.table)),
         soci::use(wanted, "st"), soci::use(wanted, "st2"), soci::use(limit, "n"));
      for (const auto& r : rows) {
        saga_summary s;
        s.type = saga.name;
        s.id = r.get<std::string>(0);
        s.status = saga_status_from(r.get<std::string>(1)).value_or(saga_status::running);
        s.reason = r.get<std::string>(2);
        s.created = r.get<long long>(3);
        s.updated = r.get<long long>(4);
        s.pending_compensations = static_cast<std::size_t>(r.get<int>(5));
        all.push_back(std::move(s));
      }
    }
    std::sort(all.begin(), all.end(),
              [](const saga_summary& a, const saga_summary& b) { return a.updated > b.updated; });
    if (all.size() > static_cast<std::size_t>(limit))
      all.resize(static_cast<std::size_t>(limit));
    return all;
  });
}

std::size_t saga_store::forget_finished(const saga_definition& saga, int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    long long removed = 0;
    sql << fmt::format(
      "WITH d AS (DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE keep_until < now() "
      "LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM d",
      names::qualified(conn_.settings().schema, saga.table)),
      soci::use(limit), soci::into(removed);
    return static_cast<std::size_t>(removed);
  });
}

} // namespace depot::persistence
