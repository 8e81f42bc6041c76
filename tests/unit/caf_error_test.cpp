// depot's error codes as CAF errors: what a failed actor's exit reason carries to its supervisor.
#include <doctest/doctest.h>

#include <string>

#include <caf/all.hpp>

#include "depot/actors/service.hpp"

TEST_CASE("a depot error code travels as a CAF error of category depot with its reason") {
  auto e = depot::make_error(depot::errc::db_permanent, "relation \"accounts\" does not exist");
  CHECK(e.category() == caf::atom("depot"));
  CHECK(e.code() == static_cast<std::uint8_t>(depot::errc::db_permanent));
  REQUIRE(e.context().match_elements<std::string>());
  CHECK(e.context().get_as<std::string>(0) == "relation \"accounts\" does not exist");
  CHECK(e != caf::error{}); // code 0 would read as no error
}
