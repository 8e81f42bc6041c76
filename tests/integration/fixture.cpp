// The shared test fixture: schema guard, settings, SQL helpers.
#include "fixture.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/persistence/db_error.hpp"

namespace depot_it {

namespace {

std::string random_hex(int digits) {
  static std::mt19937_64 random{std::random_device{}()};
  std::string out;
  while (static_cast<int>(out.size()) < digits)
    out += fmt::format("{:016x}", random());
  out.resize(static_cast<std::size_t>(digits));
  return out;
}

} // namespace

std::string test_database() {
  const char* uri = std::getenv("DEPOT_TEST_DB");
  if (uri == nullptr || *uri == '\0')
    FAIL(
      "DEPOT_TEST_DB is not set: the integration tests need a Postgres. Run scripts/test "
      "integration, or set DEPOT_TEST_DB to a libpq URI such as "
      "postgresql://postgres@127.0.0.1:5432/depot");
  return uri;
}

test_schema::test_schema() : db_(test_database()), name_("it_" + random_hex(16)) {
  try {
    sql_ = depot::persistence::open_session(db_);
  } catch (const depot::persistence::db_error& e) {
    FAIL("cannot connect to DEPOT_TEST_DB (" << db_ << "): " << e.what());
  }
  *sql_ << "CREATE SCHEMA " + name_;
  *sql_ << "SET search_path TO " + name_;
}

test_schema::~test_schema() {
  try {
    *sql_ << "DROP SCHEMA IF EXISTS " + name_ + " CASCADE";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: could not drop test schema %s: %s\n", name_.c_str(), e.what());
  }
}

std::string test_schema::table(std::string_view name) const {
  return fmt::format("{}.{}", name_, name);
}

depot::node_settings test_schema::node_config() const {
  depot::node_settings s;
  s.db = db_;
  s.schema = name_;
  s.service = "it";
  s.polling_interval = 50ms;
  s.heartbeat_interval = 100ms;
  s.stale_after = 1s;
  s.failures.retry_delay = 50ms;
  return s;
}

depot::persistence::store_settings test_schema::store_config() const {
  depot::persistence::store_settings s;
  s.db = db_;
  s.schema = name_;
  return s;
}

void test_schema::exec(const std::string& statement) {
  *sql_ << statement;
}

long long test_schema::number(const std::string& query) {
  long long n = 0;
  soci::indicator ind = soci::i_ok;
  *sql_ << query, soci::into(n, ind);
  return ind == soci::i_null || !sql_->got_data() ? 0 : n;
}

std::string test_schema::text(const std::string& query) {
  std::string s;
  soci::indicator ind = soci::i_ok;
  *sql_ << query, soci::into(s, ind);
  return ind == soci::i_null || !sql_->got_data() ? std::string{} : s;
}

depot::envelope make_envelope(std::string queue, std::string type, std::string body) {
  depot::envelope e;
  e.id = depot::new_envelope_id();
  e.queue = std::move(queue);
  e.message_type = std::move(type);
  e.body = std::move(body);
  return e;
}

void create_effects_table(test_schema& s) {
  s.exec(
    "CREATE TABLE effects (envelope_id uuid NOT NULL, tag text NOT NULL, node integer NOT "
    "NULL DEFAULT 0, handled_at timestamptz NOT NULL DEFAULT clock_timestamp())");
}

void record_effect(depot::context& ctx, const std::string& effects, const std::string& tag,
                   int node) {
  ctx.db() << "INSERT INTO " + effects + " (envelope_id, tag, node) VALUES (:id::uuid, :t, :n)",
    soci::use(ctx.incoming().id), soci::use(tag), soci::use(node);
}

} // namespace depot_it
