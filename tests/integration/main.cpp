// Entry point of the integration tests. They need a Postgres: DEPOT_TEST_DB holds its libpq URI
// (scripts/test starts a private server and sets it); without it every test fails and says so.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>

int main(int argc, char** argv) {
  // Node start/stop lines would drown doctest's report; DEPOT_LOG=info brings them back.
  ::setenv("DEPOT_LOG", "warning", 0);
  doctest::Context context{argc, argv};
  return context.run();
}
