// Unit tests of the CloudEvents 1.0 Kafka protocol binding: an envelope as a binary or structured
// record, a record of either mode back as an envelope, the attributes an input must have, ids
// that are not UUIDs, and the base64 of data_base64. No broker, no database.
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "depot/runtime/message.hpp"
#include "depot/transports/cloudevents.hpp"

namespace cloudevents_test {

namespace ce = depot::cloudevents;

const std::string order_body =
  R"({"order":"o-17","lines":[{"sku":"A-1","quantity":2}],"paid":true})";
const std::string order_source = "urn:depot:orders";
constexpr depot::micros stored_at = 1'780'000'000'000'123;

/// An order envelope as the store holds it, with the headers a sent message carries and two
/// that must stay home.
depot::envelope order_placed() {
  depot::envelope e;
  e.id = depot::new_envelope_id();
  e.queue = "orders.order-placed";
  e.message_type = "orders.order-placed";
  e.body = order_body;
  e.received_at = stored_at;
  e.headers[depot::header::correlation_id] = "corr-1";
  e.headers[depot::header::causation_id] = "cause-1";
  e.headers[depot::header::traceparent] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  e.headers["subject"] = "order/o-17";
  e.headers[depot::header::reply_to] = "orders.replies";
  e.headers["depot-rate-slot"] = "0/1780000000000123";
  return e;
}

/// The values of header `name` of `r`, in record order.
std::vector<std::string> values_of(const ce::record& r, std::string_view name) {
  std::vector<std::string> values;
  for (const auto& [n, v] : r.headers)
    if (n == name)
      values.push_back(v);
  return values;
}

/// The one value of header `name` of `r`, or nullopt when it has none or several.
std::optional<std::string> header_of(const ce::record& r, std::string_view name) {
  auto values = values_of(r, name);
  if (values.size() != 1)
    return std::nullopt;
  return values.front();
}

/// A binary-mode record carrying every required attribute, with event id `id`.
ce::record binary_event(std::string id = "4b3f1c2e-9a7d-4e21-8c55-0f6b2d9e1a34") {
  ce::record r;
  r.topic = "orders.events";
  r.value = order_body;
  r.headers = {{"ce_specversion", "1.0"},
               {"ce_id", std::move(id)},
               {"ce_source", order_source},
               {"ce_type", "orders.order-placed"},
               {"content-type", "application/json"}};
  return r;
}

/// `r` without header `name`.
ce::record without(ce::record r, std::string_view name) {
  std::erase_if(r.headers, [&](const auto& h) { return h.first == name; });
  return r;
}

/// `r` with header `name` set to `value`.
ce::record with(ce::record r, std::string_view name, std::string value) {
  for (auto& [n, v] : r.headers)
    if (n == name)
      v = value;
  return r;
}

/// A structured-mode record of JSON `value`.
ce::record structured_event(std::string value) {
  ce::record r;
  r.topic = "orders.events";
  r.value = std::move(value);
  r.headers = {{"content-type", std::string{ce::structured_content_type}}};
  return r;
}

/// What from_record says of `r`: the decode_error's message, or "" when it accepts it.
std::string refusal_of(const ce::record& r) {
  try {
    (void)ce::from_record(r);
  } catch (const depot::decode_error& e) {
    return e.what();
  }
  return "";
}

/// `text` parsed; REQUIREs that it is a JSON object.
rapidjson::Document parsed(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

/// The string member `name` of object `v`, or nullopt when absent or not a string.
std::optional<std::string> string_member(const rapidjson::Value& v, const char* name) {
  auto m = v.FindMember(name);
  if (m == v.MemberEnd() || !m->value.IsString())
    return std::nullopt;
  return std::string{m->value.GetString(), m->value.GetStringLength()};
}

bool is_lower_case_uuid(const std::string& s) {
  if (s.size() != 36)
    return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
    if (dash ? s[i] != '-' : !hex)
      return false;
  }
  return true;
}

} // namespace cloudevents_test

using namespace cloudevents_test;

TEST_CASE(
  "a binary cloudevents record carries the attributes as ce_ headers and the body as value") {
  auto e = order_placed();
  auto r = ce::to_record(e, "orders.events", order_source, depot::cloudevents_mode::binary);
  CHECK(r.topic == "orders.events");
  CHECK(r.value == order_body);
  CHECK(header_of(r, "ce_specversion") == "1.0");
  CHECK(header_of(r, "ce_id") == e.id);
  CHECK(header_of(r, "ce_source") == order_source);
  CHECK(header_of(r, "ce_type") == "orders.order-placed");
  CHECK(header_of(r, "ce_time") == depot::iso8601(stored_at));
  CHECK(header_of(r, "content-type") == "application/json");
}

TEST_CASE("a binary cloudevents record carries correlation, causation, trace and subject") {
  auto r =
    ce::to_record(order_placed(), "orders.events", order_source, depot::cloudevents_mode::binary);
  CHECK(header_of(r, "ce_correlationid") == "corr-1");
  CHECK(header_of(r, "ce_causationid") == "cause-1");
  CHECK(header_of(r, "ce_traceparent") ==
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  CHECK(header_of(r, "ce_subject") == "order/o-17");
}

TEST_CASE("reply-to and depot headers stay home when an envelope becomes a cloudevent") {
  for (auto mode : {depot::cloudevents_mode::binary, depot::cloudevents_mode::structured}) {
    CAPTURE(depot::to_string(mode));
    auto r = ce::to_record(order_placed(), "orders.events", order_source, mode);
    for (const auto& [name, value] : r.headers) {
      CAPTURE(name);
      CHECK(name.find("reply") == std::string::npos);
      CHECK(name.find("depot") == std::string::npos);
      CHECK(value != "orders.replies");
    }
    CHECK(r.value.find("orders.replies") == std::string::npos);
    CHECK(r.value.find("rate") == std::string::npos);
  }
}

TEST_CASE("the record key is the envelope's message key, also sent as partitionkey") {
  auto e = order_placed();
  e.key = "customer-9";
  auto r = ce::to_record(e, "orders.events", order_source, depot::cloudevents_mode::binary);
  CHECK(r.key == "customer-9");
  CHECK(header_of(r, "ce_partitionkey") == "customer-9");
}

TEST_CASE("an envelope without a message key is keyed by its id and has no partitionkey") {
  auto e = order_placed();
  auto r = ce::to_record(e, "orders.events", order_source, depot::cloudevents_mode::binary);
  CHECK(r.key == e.id);
  CHECK(values_of(r, "ce_partitionkey").empty());
}

TEST_CASE("a structured cloudevents record is one json object with the body as data") {
  auto e = order_placed();
  e.key = "customer-9";
  auto r = ce::to_record(e, "orders.events", order_source, depot::cloudevents_mode::structured);
  REQUIRE(r.headers.size() == 1);
  CHECK(r.headers[0].first == "content-type");
  CHECK(r.headers[0].second == "application/cloudevents+json");
  CHECK(r.key == "customer-9");

  auto doc = parsed(r.value);
  CHECK(string_member(doc, "specversion") == "1.0");
  CHECK(string_member(doc, "id") == e.id);
  CHECK(string_member(doc, "source") == order_source);
  CHECK(string_member(doc, "type") == "orders.order-placed");
  CHECK(string_member(doc, "time") == depot::iso8601(stored_at));
  CHECK(string_member(doc, "datacontenttype") == "application/json");
  CHECK(string_member(doc, "partitionkey") == "customer-9");
  CHECK(string_member(doc, "subject") == "order/o-17");
  CHECK(string_member(doc, "correlationid") == "corr-1");
  CHECK(string_member(doc, "causationid") == "cause-1");
  CHECK(string_member(doc, "traceparent") ==
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  CHECK_FALSE(doc.HasMember("data_base64"));

  REQUIRE(doc.HasMember("data"));
  REQUIRE(doc["data"].IsObject());
  CHECK(doc["data"] == parsed(order_body));
}

TEST_CASE("an envelope survives a binary cloudevents round trip") {
  auto e = order_placed();
  auto back = ce::from_record(
    ce::to_record(e, "orders.events", order_source, depot::cloudevents_mode::binary));
  CHECK(back.id == e.id);
  CHECK(back.message_type == e.message_type);
  CHECK(back.body == e.body);
  CHECK(back.header_value(depot::header::correlation_id) == "corr-1");
  CHECK(back.header_value(depot::header::causation_id) == "cause-1");
  CHECK(back.header_value(depot::header::traceparent) ==
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  CHECK(back.header_value("subject") == "order/o-17");
  CHECK(back.header_value(depot::header::source) == order_source);
  CHECK(back.deduplicated);
}

TEST_CASE("an envelope survives a structured cloudevents round trip") {
  auto e = order_placed();
  auto back = ce::from_record(
    ce::to_record(e, "orders.events", order_source, depot::cloudevents_mode::structured));
  CHECK(back.id == e.id);
  CHECK(back.message_type == e.message_type);
  CHECK(parsed(back.body) == parsed(e.body));
  CHECK(back.header_value(depot::header::correlation_id) == "corr-1");
  CHECK(back.header_value(depot::header::causation_id) == "cause-1");
  CHECK(back.header_value(depot::header::traceparent) ==
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  CHECK(back.header_value("subject") == "order/o-17");
  CHECK(back.header_value(depot::header::source) == order_source);
  CHECK(back.deduplicated);
}

TEST_CASE("a keyed envelope's partitionkey does not come back as a header") {
  auto e = order_placed();
  e.key = "customer-9";
  for (auto mode : {depot::cloudevents_mode::binary, depot::cloudevents_mode::structured}) {
    CAPTURE(depot::to_string(mode));
    auto back = ce::from_record(ce::to_record(e, "orders.events", order_source, mode));
    CHECK(back.headers.count("partitionkey") == 0);
    CHECK(back.header_value(depot::header::correlation_id) == "corr-1");
  }
}

TEST_CASE("a binary cloudevent lacking a required attribute is refused naming it") {
  for (const char* attribute : {"ce_specversion", "ce_id", "ce_source", "ce_type"}) {
    CAPTURE(attribute);
    auto refusal = refusal_of(without(binary_event(), attribute));
    CHECK(refusal.find(attribute) != std::string::npos);
  }
  CHECK(refusal_of(binary_event()).empty());
}

TEST_CASE("a structured cloudevent lacking its id is refused naming 'id'") {
  auto refusal = refusal_of(structured_event(
    R"({"specversion":"1.0","source":"urn:depot:orders","type":"orders.order-placed","data":{}})"));
  CHECK(refusal.find("'id'") != std::string::npos);
}

TEST_CASE("a cloudevent of specversion 0.3 is refused naming specversion") {
  auto refusal = refusal_of(with(binary_event(), "ce_specversion", "0.3"));
  CHECK(refusal.find("specversion") != std::string::npos);
  CHECK(refusal.find("0.3") != std::string::npos);
}

TEST_CASE("binary cloudevent data of content type text/plain is refused as not json") {
  auto refusal = refusal_of(with(binary_event(), "content-type", "text/plain"));
  CHECK(refusal.find("text/plain") != std::string::npos);
  CHECK(refusal.find("not JSON") != std::string::npos);
}

TEST_CASE("binary cloudevent data of a json content type with parameters is accepted") {
  auto e = ce::from_record(with(binary_event(), "content-type", "application/json; charset=utf-8"));
  CHECK(e.body == order_body);
}

TEST_CASE("a structured cloudevent that is malformed json is refused") {
  CHECK_THROWS_AS((void)ce::from_record(structured_event(R"({"specversion":"1.0","id":"x1",)")),
                  depot::decode_error);
  CHECK_THROWS_AS((void)ce::from_record(structured_event("not json at all")), depot::decode_error);
  CHECK_THROWS_AS((void)ce::from_record(structured_event(R"(["specversion","1.0"])")),
                  depot::decode_error);
}

TEST_CASE("a structured cloudevent's data_base64 of a json object is its body") {
  auto data = ce::base64_encode(order_body);
  auto e = ce::from_record(
    structured_event(R"({"specversion":"1.0","id":"4b3f1c2e-9a7d-4e21-8c55-0f6b2d9e1a34",)"
                     R"("source":"urn:depot:orders","type":"orders.order-placed",)"
                     R"("datacontenttype":"application/json","data_base64":")" +
                     data + R"("})"));
  CHECK(e.body == order_body);
  CHECK(e.message_type == "orders.order-placed");
}

TEST_CASE("a structured cloudevent's data_base64 that is not base64 is refused") {
  auto refusal = refusal_of(structured_event(
    R"({"specversion":"1.0","id":"4b3f1c2e-9a7d-4e21-8c55-0f6b2d9e1a34",)"
    R"("source":"urn:depot:orders","type":"orders.order-placed","data_base64":"e30*"})"));
  CHECK(refusal.find("data_base64") != std::string::npos);
  CHECK(refusal.find("not base64") != std::string::npos);
}

TEST_CASE("an event id that is not a uuid becomes a version 8 uuid of source and id") {
  auto e = ce::from_record(binary_event("cmd-1"));
  CHECK(e.id.size() == 36);
  CHECK(is_lower_case_uuid(e.id));
  CHECK(e.id[14] == '8');
  CHECK(std::string{"89ab"}.find(e.id[19]) != std::string::npos);
  CHECK(e.header_value("cloudevents-id") == "cmd-1");
}

TEST_CASE("a redelivered event whose id is not a uuid gets the same envelope id") {
  auto first = ce::from_record(binary_event("cmd-1"));
  auto again = ce::from_record(binary_event("cmd-1"));
  CHECK(first.id == again.id);
  auto other_command = ce::from_record(binary_event("cmd-2"));
  CHECK(other_command.id != first.id);
}

TEST_CASE("the same event id from another source gets another envelope id") {
  auto ours = ce::from_record(binary_event("cmd-1"));
  auto theirs = ce::from_record(with(binary_event("cmd-1"), "ce_source", "urn:other:service"));
  CHECK(theirs.id != ours.id);
  CHECK(theirs.header_value("cloudevents-id") == "cmd-1");
}

TEST_CASE("an upper-case uuid event id is lower-cased and kept as the envelope id") {
  auto e = ce::from_record(binary_event("4B3F1C2E-9A7D-4E21-8C55-0F6B2D9E1A34"));
  CHECK(e.id == "4b3f1c2e-9a7d-4e21-8c55-0f6b2d9e1a34");
  CHECK(e.headers.count("cloudevents-id") == 0);
}

TEST_CASE("base64 encodes the rfc 4648 test vectors") {
  CHECK(ce::base64_encode("") == "");
  CHECK(ce::base64_encode("f") == "Zg==");
  CHECK(ce::base64_encode("fo") == "Zm8=");
  CHECK(ce::base64_encode("foo") == "Zm9v");
  CHECK(ce::base64_encode("foob") == "Zm9vYg==");
  CHECK(ce::base64_encode("fooba") == "Zm9vYmE=");
  CHECK(ce::base64_encode("foobar") == "Zm9vYmFy");
}

TEST_CASE("base64 decodes the rfc 4648 test vectors") {
  CHECK(ce::base64_decode("") == "");
  CHECK(ce::base64_decode("Zg==") == "f");
  CHECK(ce::base64_decode("Zm8=") == "fo");
  CHECK(ce::base64_decode("Zm9v") == "foo");
  CHECK(ce::base64_decode("Zm9vYg==") == "foob");
  CHECK(ce::base64_decode("Zm9vYmE=") == "fooba");
  CHECK(ce::base64_decode("Zm9vYmFy") == "foobar");
}

TEST_CASE("base64 round-trips every byte value, nul and 0xff included") {
  std::string bytes;
  for (int b = 0; b < 256; ++b)
    bytes += static_cast<char>(b);
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{3}, bytes.size()}) {
    CAPTURE(n);
    auto slice = bytes.substr(bytes.size() - n);
    CHECK(ce::base64_decode(ce::base64_encode(slice)) == slice);
  }
  const std::string nul_and_ff{"\0\xff\0", 3};
  CHECK(ce::base64_encode(nul_and_ff) == "AP8A");
  CHECK(ce::base64_decode("AP8A") == nul_and_ff);
  CHECK(ce::base64_decode(ce::base64_encode(bytes)) == bytes);
}

TEST_CASE("text that is not base64 decodes to nothing") {
  CHECK(ce::base64_decode("Zg=") == std::nullopt);      // length not a multiple of 4
  CHECK(ce::base64_decode("Zm9vY") == std::nullopt);    // length not a multiple of 4
  CHECK(ce::base64_decode("Zm9*") == std::nullopt);     // a character outside the alphabet
  CHECK(ce::base64_decode("Zm 9") == std::nullopt);     // a space
  CHECK(ce::base64_decode("Zg=a") == std::nullopt);     // data after padding
  CHECK(ce::base64_decode("Zg==Zm9v") == std::nullopt); // padding before the end
  CHECK(ce::base64_decode("Z===") == std::nullopt);     // padding too early in a group
  CHECK(ce::base64_decode("====") == std::nullopt);     // nothing but padding
  CHECK(ce::base64_decode(std::string_view{"Zm9\0", 4}) == std::nullopt); // a nul byte
}
