// Unit tests of depot's error vocabulary: every code has a stable name that docs/errors.md
// documents, the retry predicates, the codes depot's exceptions carry, and the failure policy
// deciding by code rather than by exception class.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/db_error.hpp"
#include "depot/runtime/error.hpp"
#include "depot/runtime/failure_policy.hpp"
#include "depot/runtime/message.hpp"
#include "depot/runtime/settings.hpp"

namespace error_test {

using depot::errc;

/// Every code. The values run from 1 without a gap, so the first number without a name ends
/// them; a value appended to the enum is found here without editing this test.
std::vector<errc> all_codes() {
  std::vector<errc> result;
  for (int i = 1; i < 256; ++i) {
    auto code = static_cast<errc>(i);
    if (std::string_view{to_string(code)} == "unknown")
      break;
    result.push_back(code);
  }
  return result;
}

/// An application's own error saying that a message can never be handled.
class overdraft : public depot::error {
public:
  explicit overdraft(const std::string& what) : error(errc::validation_error, what) {}
};

template <class E>
std::exception_ptr thrown(E e) {
  return std::make_exception_ptr(std::move(e));
}

/// The code of the depot::error `f` throws; fails the test when it throws nothing or something
/// else.
template <class F>
errc code_thrown_by(F&& f) {
  try {
    f();
  } catch (const depot::error& e) {
    return e.code();
  }
  FAIL("no depot::error thrown");
  throw;
}

struct account {
  std::string id;
  std::int64_t amount = 0;
  void validate() const {
    if (amount < 1)
      throw depot::validation_error{"amount must be at least 1"};
  }
};
DEPOT_MESSAGE(account, "error-test.account", id, amount)

} // namespace error_test

using namespace error_test;

TEST_CASE("every error code has a distinct, non-empty snake_case name") {
  auto codes = all_codes();
  CHECK(codes.size() == 13);
  std::set<std::string> names;
  for (auto code : codes) {
    std::string name = to_string(code);
    CAPTURE(name);
    CHECK(!name.empty());
    CHECK(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos);
    CHECK(names.insert(name).second);
  }
  CHECK(std::string_view{to_string(errc::db_transient)} == "db_transient");
  CHECK(std::string_view{to_string(static_cast<errc>(0))} == "unknown");
}

TEST_CASE("docs/errors.md documents every error code") {
  std::ifstream in{DEPOT_SOURCE_ROOT "/docs/errors.md"};
  REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  auto doc = text.str();
  for (auto code : all_codes()) {
    auto row = "| `" + std::string{to_string(code)} + "` |";
    CAPTURE(row);
    CHECK(doc.find(row) != std::string::npos);
  }
}

TEST_CASE("only database failures that may succeed when done again are retryable") {
  std::set<errc> expected{errc::db_transient, errc::db_connection_lost, errc::db_outcome_unknown};
  for (auto code : all_codes()) {
    CAPTURE(to_string(code));
    CHECK(depot::retryable(code) == expected.contains(code));
  }
}

TEST_CASE(
  "only undecodable, invalid, unhandled and unauthorized messages are permanent for a message") {
  std::set<errc> expected{errc::decode_error, errc::validation_error, errc::unknown_message_type,
                          errc::unauthorized};
  for (auto code : all_codes()) {
    CAPTURE(to_string(code));
    CHECK(depot::permanent_for_message(code) == expected.contains(code));
    if (depot::permanent_for_message(code))
      CHECK_FALSE(depot::retryable(code));
  }
}

TEST_CASE(
  "decode, validation and setting errors carry their codes and are caught as "
  "depot::error") {
  CHECK(code_thrown_by([] { (void)depot::from_json<account>("{"); }) == errc::decode_error);
  CHECK(code_thrown_by([] { (void)depot::from_json<account>(R"({"id":"a"})"); }) ==
        errc::decode_error);
  CHECK(code_thrown_by([] { (void)depot::from_json<account>(R"({"id":"a","amount":0})"); }) ==
        errc::validation_error);
  depot::node_settings s;
  s.batch_size = 0;
  CHECK(code_thrown_by([&] { depot::check(s); }) == errc::invalid_setting);
  CHECK(code_thrown_by([] { depot::check_schema_name("Bad"); }) == errc::invalid_setting);

  CHECK(depot::decode_error{"x"}.code() == errc::decode_error);
  CHECK(depot::validation_error{"x"}.code() == errc::validation_error);
  CHECK(depot::invalid_setting{"x"}.code() == errc::invalid_setting);
  CHECK_THROWS_WITH_AS(throw depot::invalid_setting{"--batch-size 0 is out of range"},
                       "--batch-size 0 is out of range", std::runtime_error);
  CHECK_THROWS_AS(throw depot::decode_error{"x"}, std::exception);
}

TEST_CASE(
  "a database error carries the code of its kind and keeps its kind, SQLSTATE and "
  "retryability") {
  using depot::persistence::db_error;
  using depot::persistence::failure_kind;
  struct expectation {
    failure_kind kind;
    errc code;
    bool retryable;
  };
  const expectation expected[] = {
    {failure_kind::transient, errc::db_transient, true},
    {failure_kind::connection_lost, errc::db_connection_lost, true},
    {failure_kind::outcome_unknown, errc::db_outcome_unknown, true},
    {failure_kind::permanent, errc::db_permanent, false},
  };
  for (const auto& x : expected) {
    db_error e{x.kind, "40P01", "deadlock detected"};
    CAPTURE(to_string(x.kind));
    CHECK(e.code() == x.code);
    CHECK(e.kind() == x.kind);
    CHECK(e.sqlstate() == "40P01");
    CHECK(std::string_view{e.what()} == "deadlock detected");
    CHECK(e.retryable() == x.retryable);
    CHECK(e.retryable() == depot::retryable(e.code()));
    CHECK(code_thrown_by([&] { throw e; }) == x.code);
  }
}

TEST_CASE("the failure policy dead-letters at once any depot error whose code is permanent") {
  depot::failure_policy policy{.max_attempts = 5};
  depot::envelope first;
  auto d =
    decide(depot::default_error_policy(policy), first, thrown(overdraft{"balance would wrap"}));
  CHECK(d.what == depot::failure_action::dead_letter);
  CHECK(d.exception_type == "error_test::overdraft");
  CHECK(d.reason == "balance would wrap");
}

TEST_CASE(
  "the failure policy retries a depot error whose code is not permanent, and a "
  "std::runtime_error") {
  depot::failure_policy policy{.max_attempts = 5};
  depot::envelope first;
  // db_permanent: the statement failed on this data, which a later attempt may find changed.
  auto db = decide(depot::default_error_policy(policy), first,
                   thrown(depot::persistence::db_error{depot::persistence::failure_kind::permanent,
                                                       "23505", "duplicate key"}));
  CHECK(db.what == depot::failure_action::retry_later);
  CHECK(db.exception_type == "depot::persistence::db_error");
  auto unrouted = decide(depot::default_error_policy(policy), first,
                         thrown(depot::error{errc::no_route, "no handler"}));
  CHECK(unrouted.what == depot::failure_action::retry_later);
  auto plain =
    decide(depot::default_error_policy(policy), first, thrown(std::runtime_error{"boom"}));
  CHECK(plain.what == depot::failure_action::retry_later);
  CHECK(plain.exception_type == "std::runtime_error");
}

TEST_CASE("dead letters and logs name decode and validation errors by their class, as before") {
  CHECK(depot::describe(thrown(depot::decode_error{"missing field 'x'"})) ==
        "depot::decode_error: missing field 'x'");
  CHECK(depot::describe(thrown(depot::validation_error{"negative"})) ==
        "depot::validation_error: negative");
  CHECK(depot::describe(thrown(depot::invalid_setting{"--schema"})) ==
        "depot::invalid_setting: --schema");
}
