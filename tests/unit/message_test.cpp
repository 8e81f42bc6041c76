// Unit tests of DEPOT_MESSAGE: type names, the JSON codec and its decode errors, and CAF 0.17
// binary serialisation of the same declarations.
#include "depot/runtime/message.hpp"

#include <doctest/doctest.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace bank {

struct debit_account {
  std::string account_id;
  std::int64_t amount;
};
DEPOT_MESSAGE(debit_account, "bank.debit-account", account_id, amount)

} // namespace bank

namespace shop {

struct line {
  std::string sku;
  std::uint32_t quantity = 0;
  bool operator==(const line&) const = default;
};
DEPOT_MESSAGE(line, "shop.line", sku, quantity)

struct scalars {
  std::string text;
  bool flag = false;
  std::int8_t i8 = 0;
  std::uint8_t u8 = 0;
  std::int16_t i16 = 0;
  std::uint16_t u16 = 0;
  std::int32_t i32 = 0;
  std::uint32_t u32 = 0;
  std::int64_t i64 = 0;
  std::uint64_t u64 = 0;
  double ratio = 0;
  float weight = 0;
  char letter = 0;
  long long big = 0;
  unsigned long size = 0;
  std::string note;
  bool operator==(const scalars&) const = default;
};
DEPOT_MESSAGE(scalars, "shop.scalars", text, flag, i8, u8, i16, u16, i32, u32, i64, u64, ratio,
              weight, letter, big, size, note)

struct order {
  scalars values;
  line first_line;
  std::vector<line> lines;
  std::vector<std::optional<std::int64_t>> sparse;
  std::vector<bool> bits;
  std::optional<std::string> comment;
  std::optional<line> gift;
  std::optional<std::int32_t> discount;
  std::map<std::string, line> by_sku;
  std::map<std::string, std::vector<std::string>> tags;
  bool operator==(const order&) const = default;
};
DEPOT_MESSAGE(order, "shop.order", values, first_line, lines, sparse, bits, comment, gift, discount,
              by_sku, tags)

struct ping {};
DEPOT_MESSAGE(ping, "shop.ping")

struct renamed_debit : bank::debit_account {};

} // namespace shop

namespace {

shop::order full_order() {
  shop::order o;
  o.values = {"héllo \"quoted\"\n\t\\",
              true,
              std::numeric_limits<std::int8_t>::min(),
              std::numeric_limits<std::uint8_t>::max(),
              std::numeric_limits<std::int16_t>::min(),
              std::numeric_limits<std::uint16_t>::max(),
              std::numeric_limits<std::int32_t>::min(),
              std::numeric_limits<std::uint32_t>::max(),
              std::numeric_limits<std::int64_t>::min(),
              std::numeric_limits<std::uint64_t>::max(),
              0.1,
              1.5e-7f,
              'x',
              std::numeric_limits<long long>::max(),
              42,
              "tab\tinside"};
  o.first_line = {"sku-1", 3};
  o.lines = {{"sku-2", 1}, {"sku-3", 2}};
  o.sparse = {1, std::nullopt, -3};
  o.bits = {true, false, true};
  o.comment = "leave at the door";
  o.gift = std::nullopt;
  o.discount = 5;
  o.by_sku = {{"sku-2", {"sku-2", 1}}, {"", {"empty-key", 0}}};
  o.tags = {{"colour", {"red", "blue"}}, {"none", {}}};
  return o;
}

// Decodes `json` as a `T` and drops the result: for tests that expect a decode_error.
template <class T>
void decode(std::string_view json) {
  (void)depot::from_json<T>(json);
}

std::vector<char> caf_bytes(caf::actor_system& sys, shop::order& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  REQUIRE(!sink(x));
  return buf;
}

} // namespace

TEST_CASE("only types declared with DEPOT_MESSAGE are messages") {
  static_assert(depot::message<bank::debit_account>);
  static_assert(depot::message<shop::ping>);
  static_assert(!depot::message<int>);
  static_assert(!depot::message<std::string>);
  static_assert(!depot::message<shop::renamed_debit>);
}

TEST_CASE("type_name_of gives the name the declaration registered") {
  static_assert(depot::type_name_of<bank::debit_account>() == "bank.debit-account");
  CHECK(depot::type_name_of<shop::order>() == "shop.order");
}

TEST_CASE("a simple message becomes a compact JSON object keyed by field name") {
  CHECK(depot::to_json(bank::debit_account{"acct-7", 25}) ==
        R"({"account_id":"acct-7","amount":25})");
  CHECK(depot::to_json(shop::ping{}) == "{}");
}

TEST_CASE("a message with every supported field type survives a JSON round trip") {
  auto original = full_order();
  auto json = depot::to_json(original);
  CAPTURE(json);
  CHECK(depot::from_json<shop::order>(json) == original);
  CHECK(depot::to_json(depot::from_json<shop::order>(json)) == json);
}

TEST_CASE("nested messages, vectors and maps are written as JSON objects and arrays") {
  shop::order o;
  o.lines = {{"a", 1}};
  o.sparse = {1, std::nullopt};
  o.by_sku = {{"a", {"a", 1}}};
  o.tags = {{"t", {"x"}}};
  auto json = depot::to_json(o);
  CHECK(json.find(R"("first_line":{"sku":"","quantity":0})") != std::string::npos);
  CHECK(json.find(R"("lines":[{"sku":"a","quantity":1}])") != std::string::npos);
  CHECK(json.find(R"("sparse":[1,null])") != std::string::npos);
  CHECK(json.find(R"("by_sku":{"a":{"sku":"a","quantity":1}})") != std::string::npos);
  CHECK(json.find(R"("tags":{"t":["x"]})") != std::string::npos);
}

TEST_CASE("an empty optional is written as null and read back from null or absence") {
  auto o = full_order();
  o.comment.reset();
  auto json = depot::to_json(o);
  CHECK(json.find(R"("comment":null)") != std::string::npos);
  CHECK(json.find(R"("gift":null)") != std::string::npos);
  CHECK_FALSE(depot::from_json<shop::order>(json).comment.has_value());

  auto without = json;
  without.replace(without.find(R"("comment":null,)"), 15, "");
  CHECK(without.find("comment") == std::string::npos);
  CHECK(depot::from_json<shop::order>(without) == o);
}

TEST_CASE("members the message does not declare are ignored") {
  auto debit = depot::from_json<bank::debit_account>(
    R"({"currency":"EUR","account_id":"acct-7","meta":{"x":[1,2]},"amount":25})");
  CHECK(debit.account_id == "acct-7");
  CHECK(debit.amount == 25);
}

TEST_CASE("malformed JSON is a decode error naming RapidJSON's reason and offset") {
  using msg = bank::debit_account;
  CHECK_THROWS_WITH_AS(decode<msg>(R"({"account_id":"acct-7",)"),
                       "malformed JSON at offset 23: Missing a name for object member.",
                       depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<msg>(""), "malformed JSON at offset 0: The document is empty.",
                       depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<msg>(R"({"account_id":"a","amount":1} x)"),
                       "malformed JSON at offset 30: The document root must not be followed by "
                       "other values.",
                       depot::decode_error);
}

TEST_CASE("a body that is not a JSON object is a decode error") {
  CHECK_THROWS_WITH_AS(decode<bank::debit_account>("[1,2]"), "body is not a JSON object",
                       depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<bank::debit_account>("null"), "body is not a JSON object",
                       depot::decode_error);
}

TEST_CASE("a missing field is a decode error naming the field") {
  CHECK_THROWS_WITH_AS(decode<bank::debit_account>(R"({"account_id":"acct-7"})"),
                       "missing field 'amount'", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<bank::debit_account>(R"({"account_id":"acct-7","amount":null})"),
                       "field 'amount': expected an integer", depot::decode_error);
  auto json = depot::to_json(full_order());
  json.replace(json.find(R"("sku":"sku-3",)"), 14, "");
  CHECK_THROWS_WITH_AS(decode<shop::order>(json), "missing field 'lines[1].sku'",
                       depot::decode_error);
}

TEST_CASE("a value of the wrong type is a decode error naming the field and the expected type") {
  using msg = bank::debit_account;
  CHECK_THROWS_WITH_AS(decode<msg>(R"({"account_id":"a","amount":"25"})"),
                       "field 'amount': expected an integer", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<msg>(R"({"account_id":"a","amount":25.5})"),
                       "field 'amount': expected an integer", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<msg>(R"({"account_id":7,"amount":25})"),
                       "field 'account_id': expected a string", depot::decode_error);

  auto with = [](std::string_view from, std::string_view to) {
    auto json = depot::to_json(full_order());
    auto at = json.find(from);
    REQUIRE(at != std::string::npos);
    return json.replace(at, from.size(), to);
  };
  CHECK_THROWS_WITH_AS(decode<shop::order>(with(R"("flag":true)", R"("flag":1)")),
                       "field 'values.flag': expected true or false", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<shop::order>(with(R"("ratio":0.1)", R"("ratio":"0.1")")),
                       "field 'values.ratio': expected a number", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<shop::order>(with(R"("bits":[true,false,true])", R"("bits":7)")),
                       "field 'bits': expected an array", depot::decode_error);
  CHECK_THROWS_WITH_AS(
    decode<shop::order>(with(R"("tags":{"colour":["red","blue"],"none":[]})", R"("tags":[])")),
    "field 'tags': expected a JSON object", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<shop::order>(with(R"("first_line":{"sku":"sku-1","quantity":3})",
                                                R"("first_line":"sku-1")")),
                       "field 'first_line': expected a JSON object", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<shop::order>(with(R"("sparse":[1,null,-3])", R"("sparse":[1,"2"])")),
                       "field 'sparse[1]': expected an integer", depot::decode_error);
  CHECK_THROWS_WITH_AS(
    decode<shop::order>(with(R"("colour":["red","blue"])", R"("colour":["red",2])")),
    "field 'tags.colour[1]': expected a string", depot::decode_error);
}

TEST_CASE("an integer outside the field type's range is a decode error") {
  auto with = [](std::string_view from, std::string_view to) {
    auto json = depot::to_json(full_order());
    auto at = json.find(from);
    REQUIRE(at != std::string::npos);
    return json.replace(at, from.size(), to);
  };
  using shop::order;
  CHECK_THROWS_WITH_AS(decode<order>(with(R"("u8":255)", R"("u8":256)")),
                       "field 'values.u8': 256 is out of range [0, 255]", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<order>(with(R"("i8":-128)", R"("i8":-129)")),
                       "field 'values.i8': -129 is out of range [-128, 127]", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<order>(with(R"("u32":4294967295)", R"("u32":4294967296)")),
                       "field 'values.u32': 4294967296 is out of range [0, 4294967295]",
                       depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<order>(with(R"("u32":4294967295)", R"("u32":-1)")),
                       "field 'values.u32': -1 is out of range [0, 4294967295]",
                       depot::decode_error);
  CHECK_THROWS_WITH_AS(
    decode<order>(with(R"("i64":-9223372036854775808)", R"("i64":9223372036854775808)")),
    "field 'values.i64': 9223372036854775808 is out of range [-9223372036854775808, "
    "9223372036854775807]",
    depot::decode_error);
  CHECK_THROWS_WITH_AS(
    decode<order>(with(R"("u64":18446744073709551615)", R"("u64":18446744073709551616)")),
    "field 'values.u64': expected an integer", depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<order>(with(R"("discount":5)", R"("discount":2147483648)")),
                       "field 'discount': 2147483648 is out of range [-2147483648, 2147483647]",
                       depot::decode_error);
  CHECK_THROWS_WITH_AS(decode<order>(with(R"("weight":)", R"("weight":1e39,"x":)")),
                       "field 'values.weight': 1e+39 is out of range [-3.4028234663852886e+38, "
                       "3.4028234663852886e+38]",
                       depot::decode_error);
}

TEST_CASE("NaN and infinity cannot be written as JSON") {
  auto o = full_order();
  o.values.ratio = std::nan("");
  CHECK_THROWS_AS((void)depot::to_json(o), std::domain_error);
}

TEST_CASE("check_json_object accepts JSON objects only, with the reason for anything else") {
  CHECK_NOTHROW(depot::check_json_object("{}"));
  CHECK_NOTHROW(depot::check_json_object(R"( {"a":[1,{"b":null}]} )"));
  CHECK_THROWS_WITH_AS(depot::check_json_object(""), doctest::Contains("malformed JSON"),
                       depot::decode_error);
  CHECK_THROWS_WITH_AS(depot::check_json_object("[]"), "body is not a JSON object",
                       depot::decode_error);
  CHECK_THROWS_AS(depot::check_json_object("\"text\""), depot::decode_error);
  CHECK_THROWS_AS(depot::check_json_object(R"({"a":1)"), depot::decode_error);
  CHECK_THROWS_AS(depot::check_json_object(R"({"a":1} {})"), depot::decode_error);
}

namespace {

// An object whose member "x" holds `levels` nested arrays.
std::string nested(std::size_t levels) {
  return R"({"account_id":"acct-1","amount":1,"x":)" + std::string(levels, '[') +
         std::string(levels, ']') + "}";
}

} // namespace

TEST_CASE("a body nested a million levels deep is a decode error, not a stack overflow") {
  auto deep = nested(1'000'000);
  CHECK_THROWS_WITH_AS((void)depot::from_json<bank::debit_account>(deep),
                       doctest::Contains("nested deeper than 100 levels"), depot::decode_error);
  CHECK_THROWS_AS(depot::check_json_object(deep), depot::decode_error);
}

TEST_CASE("nesting up to max_json_depth decodes; one level more does not") {
  // The object itself is the first level.
  CHECK(depot::from_json<bank::debit_account>(nested(depot::max_json_depth - 1)).amount == 1);
  CHECK_THROWS_AS((void)depot::from_json<bank::debit_account>(nested(depot::max_json_depth)),
                  depot::decode_error);
}

TEST_CASE("a NUL in a string, escaped or raw, is a decode error: Postgres text cannot hold it") {
  CHECK_THROWS_WITH_AS(
    (void)depot::from_json<bank::debit_account>(R"({"account_id":"acct-2\u0000evil","amount":7})"),
    doctest::Contains("NUL"), depot::decode_error);
  CHECK_THROWS_WITH_AS((void)depot::from_json<shop::order>(R"({"tags":{"a\u0000b":["x"]}})"),
                       doctest::Contains("NUL"), depot::decode_error);
  using namespace std::string_literals;
  CHECK_THROWS_WITH_AS(depot::check_json_object("{\"a\":\"x\0y\"}"s), doctest::Contains("NUL"),
                       depot::decode_error);
  CHECK_THROWS_WITH_AS(depot::check_json_object("{\"a\":1}\0{}"s), doctest::Contains("NUL"),
                       depot::decode_error);
  // Other escapes below U+0020 are text Postgres stores.
  CHECK(
    depot::from_json<bank::debit_account>(R"({"account_id":"a\u0001b","amount":1})").account_id ==
    "a\x01"
    "b");
  auto o = full_order();
  o.values.note = std::string{"nul\0inside", 10};
  CHECK_THROWS_AS((void)depot::to_json(o), std::domain_error);
}

namespace rules {

struct transfer {
  std::string from;
  std::int64_t cents = 0;
  void validate() const {
    if (cents < 1)
      throw depot::validation_error{"cents must be positive"};
  }
};
DEPOT_MESSAGE(transfer, "rules.transfer", from, cents)

struct batch {
  std::vector<transfer> items;
};
DEPOT_MESSAGE(batch, "rules.batch", items)

} // namespace rules

TEST_CASE("from_json calls a message's validate(), also of nested messages") {
  CHECK(depot::from_json<rules::transfer>(R"({"from":"a","cents":5})").cents == 5);
  CHECK_THROWS_WITH_AS((void)depot::from_json<rules::transfer>(R"({"from":"a","cents":0})"),
                       "cents must be positive", depot::validation_error);
  CHECK_THROWS_AS((void)depot::from_json<rules::batch>(
                    R"({"items":[{"from":"a","cents":-9223372036854775808}]})"),
                  depot::validation_error);
}

TEST_CASE("CAF's binary serializer round-trips a message declared with DEPOT_MESSAGE") {
  caf::actor_system_config cfg;
  cfg.add_message_type<shop::order>("shop.order");
  caf::actor_system sys{cfg};
  auto original = full_order();
  auto buf = caf_bytes(sys, original);
  shop::order copy;
  caf::binary_deserializer source{sys, buf};
  REQUIRE(!source(copy));
  CHECK(copy == original);

  original.gift = shop::line{"gift", 1};
  original.comment.reset();
  buf = caf_bytes(sys, original);
  caf::binary_deserializer again{sys, buf};
  REQUIRE(!again(copy));
  CHECK(copy == original);
}
