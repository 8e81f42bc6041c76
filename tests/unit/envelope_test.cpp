// Unit tests of envelope ids and wake-up notices.
#include <doctest/doctest.h>

#include <regex>
#include <set>

#include "depot/persistence/notification_listener.hpp"
#include "depot/runtime/envelope.hpp"

TEST_CASE("envelope ids are version 7 uuids, unique and ordered by time") {
  static const std::regex form{
    "[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"};
  std::set<std::string> seen;
  std::string previous;
  for (int i = 0; i < 2000; ++i) {
    auto id = depot::new_envelope_id();
    REQUIRE(std::regex_match(id, form));
    CHECK(seen.insert(id).second);
    // The first 48 bits are milliseconds: never smaller than an earlier id's.
    CHECK(id.substr(0, 13) >= previous.substr(0, std::min<std::size_t>(13, previous.size())));
    previous = id;
  }
}

TEST_CASE("a wake-up notice names its sender and queues") {
  auto n = depot::persistence::parse_wake_notice("7|bank.debit-account,bank.account-updated");
  CHECK(n.sender == 7);
  CHECK(n.queues == std::vector<std::string>{"bank.debit-account", "bank.account-updated"});
  CHECK(depot::persistence::parse_wake_notice("garbage").queues.empty());
  CHECK(depot::persistence::parse_wake_notice("0|").queues.empty());
}
