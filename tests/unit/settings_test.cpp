// Unit tests of the option table: bounds, the rules between options, QUEUE=N lists, how values
// are shown, and docs/configuration.md, which must list every option with its default.
#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "depot/runtime/settings.hpp"

namespace {

const depot::node_option& option(std::string_view name) {
  for (const auto& o : depot::node_options())
    if (o.name == name)
      return o;
  FAIL("no option " << name);
  throw;
}

std::string env_name(std::string_view option) {
  std::string result = "DEPOT_";
  for (char c : option)
    result += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return result;
}

} // namespace

TEST_CASE("the defaults pass every check") {
  CHECK_NOTHROW(depot::check(depot::node_settings{}));
}

TEST_CASE("a setting outside its bounds is refused with the option, the value and the range") {
  depot::node_settings s;
  s.batch_size = 2'147'483'647;
  CHECK_THROWS_WITH_AS(depot::check(s), "--batch-size 2147483647 is out of range [1, 10000]",
                       depot::invalid_setting);
  s = {};
  s.concurrency = -1;
  CHECK_THROWS_WITH_AS(depot::check(s), "--concurrency -1 is out of range [0, 1000]",
                       depot::invalid_setting);
  s = {};
  s.polling_interval = std::chrono::milliseconds{1};
  CHECK_THROWS_WITH_AS(depot::check(s), "--polling-interval 1ms is out of range [10ms, 1h]",
                       depot::invalid_setting);
  s = {};
  s.queue_concurrency["q"] = 5000;
  CHECK_THROWS_WITH_AS(depot::check(s), "--queue-concurrency q=5000 is out of range [0, 1000]",
                       depot::invalid_setting);
  s = {};
  s.failures.max_attempts = 0;
  CHECK_THROWS_AS(depot::check(s), depot::invalid_setting);
}

TEST_CASE(
  "rules between options: stale-after at least twice the heartbeat, retry delays in "
  "order, the TLS files together") {
  depot::node_settings s;
  s.stale_after = std::chrono::milliseconds{1500};
  CHECK_THROWS_WITH_AS(depot::check(s), doctest::Contains("at least twice --heartbeat-interval"),
                       depot::invalid_setting);
  s = {};
  s.failures.retry_delay = std::chrono::minutes{2};
  CHECK_THROWS_WITH_AS(depot::check(s), "--max-retry-delay 1min is below --retry-delay 2min",
                       depot::invalid_setting);
  s = {};
  s.cluster_tls_cert = s.cluster_tls_ca = DEPOT_SOURCE_ROOT "/meson.build"; // readable files
  CHECK_THROWS_WITH_AS(depot::check(s),
                       doctest::Contains("--cluster-tls-key and --cluster-tls-ca together"),
                       depot::invalid_setting);
  s.cluster_tls_key = DEPOT_SOURCE_ROOT "/no-such-key.pem";
  CHECK_THROWS_WITH_AS(depot::check(s), doctest::Contains("--cluster-tls-key: cannot read"),
                       depot::invalid_setting);
  s.cluster_tls_key = s.cluster_tls_cert;
  CHECK_NOTHROW(depot::check(s));
}

TEST_CASE("schema names are plain lower-case identifiers") {
  CHECK_NOTHROW(depot::check_schema_name("depot_2"));
  for (auto bad : {"", "\"quoted\"", "Depot", "2depot", "a-b", "a b", "a;drop"})
    CHECK_THROWS_AS(depot::check_schema_name(bad), depot::invalid_setting);
  CHECK_THROWS_AS(depot::check_schema_name(std::string(64, 'a')), depot::invalid_setting);
}

TEST_CASE("QUEUE=N lists are parsed whole, or refused naming the option and the item") {
  const auto& o = option("queue-concurrency");
  auto parsed = depot::parse_queue_counts(o, "a=1,b.c=20");
  CHECK(parsed == std::map<std::string, int>{{"a", 1}, {"b.c", 20}});
  CHECK(depot::parse_queue_counts(o, "").empty());
  for (auto bad : {"a=abc", "a=-3", "a=", "=2", "a", "a=1,b", "a=2x", "a=99999999999"})
    CHECK_THROWS_WITH_AS((void)depot::parse_queue_counts(o, bad),
                         doctest::Contains("--queue-concurrency"), depot::invalid_setting);
}

TEST_CASE("values are shown as the command line takes them") {
  depot::node_settings s;
  s.queue_concurrency = {{"a", 2}, {"b", 0}};
  CHECK(depot::show(option("queue-concurrency"), s) == "a=2,b=0");
  CHECK(depot::show(option("dedup-window"), s) == "24h");
  CHECK(depot::show(option("cleanup-interval"), s) == "1min");
  CHECK(depot::show(option("retry-delay"), s) == "500ms");
  CHECK(depot::show(option("stale-after"), s) == "10s");
  CHECK(depot::show(option("auto-provision"), s) == "true");
  CHECK(depot::show(option("batch-size"), s) == "100");
}

TEST_CASE("docs/configuration.md has one row per option, with its variable and default") {
  std::ifstream in{DEPOT_SOURCE_ROOT "/docs/configuration.md"};
  REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  auto doc = text.str();
  std::set<std::string> documented;
  std::regex row{R"(\n\| `([a-z-]+)` \| `(DEPOT_[A-Z_]+)` \| ([^|]+) \|)"};
  for (auto i = std::sregex_iterator(doc.begin(), doc.end(), row); i != std::sregex_iterator(); ++i)
    documented.insert((*i)[1]);
  depot::node_settings defaults;
  for (const auto& o : depot::node_options()) {
    INFO("option " << o.name);
    auto value = depot::show(o, defaults);
    auto shown = value.empty() ? std::string{R"(\(embedded\)|\(empty\))"} : "`" + value + "`";
    std::regex expected{"\n\\| `" + std::string{o.name} + "` \\| `" + env_name(o.name) + "` \\| (" +
                        shown + ") \\|"};
    CHECK(std::regex_search(doc, expected));
    documented.erase(std::string{o.name});
  }
  CHECK_MESSAGE(documented.empty(), "documented but not options: " << *documented.begin());
}

TEST_CASE("max-concurrent-batches 0 means one batch per core, and never fewer than 2") {
  depot::node_settings s;
  CHECK(s.max_concurrent_batches == 0);
  CHECK(s.concurrent_batches() ==
        std::max(2, static_cast<int>(std::thread::hardware_concurrency())));
  s.max_concurrent_batches = 1;
  CHECK(s.concurrent_batches() == 1);
  s.max_concurrent_batches = -1;
  CHECK_THROWS_AS(depot::check(s), depot::invalid_setting);
}
