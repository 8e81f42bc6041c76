// The JSON half of message.hpp: the writer, document and value classes its templates call,
// implemented with RapidJSON. RapidJSON stays in this file; nothing here knows message types.
#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>

#include "depot/runtime/message.hpp"

namespace depot::detail {
namespace {

// Full precision so that a double survives to_json and from_json unchanged.
constexpr unsigned parse_flags = rapidjson::kParseFullPrecisionFlag;

constexpr std::size_t no_index = static_cast<std::size_t>(-1);

const rapidjson::Value& node(const void* p) {
  return *static_cast<const rapidjson::Value*>(p);
}

rapidjson::SizeType checked_length(std::string_view text) {
  if (text.size() > std::numeric_limits<rapidjson::SizeType>::max())
    throw std::length_error("depot: JSON strings are limited to 4 GiB");
  return static_cast<rapidjson::SizeType>(text.size());
}

}  // namespace

struct json_writer::impl {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer{buffer};
};

json_writer::json_writer() : impl_(std::make_unique<impl>()) {}

json_writer::~json_writer() = default;

void json_writer::start_object() {
  impl_->writer.StartObject();
}

void json_writer::key(std::string_view name) {
  impl_->writer.Key(name.data(), checked_length(name), true);
}

void json_writer::end_object() {
  impl_->writer.EndObject();
}

void json_writer::start_array() {
  impl_->writer.StartArray();
}

void json_writer::end_array() {
  impl_->writer.EndArray();
}

void json_writer::null() {
  impl_->writer.Null();
}

void json_writer::boolean(bool x) {
  impl_->writer.Bool(x);
}

void json_writer::integer(std::int64_t x) {
  impl_->writer.Int64(x);
}

void json_writer::unsigned_integer(std::uint64_t x) {
  impl_->writer.Uint64(x);
}

void json_writer::number(double x) {
  if (!std::isfinite(x))
    throw std::domain_error("depot::to_json: NaN and infinity have no JSON representation");
  impl_->writer.Double(x);
}

void json_writer::string(std::string_view x) {
  impl_->writer.String(x.data(), checked_length(x), true);
}

std::string json_writer::take() {
  return std::string{impl_->buffer.GetString(), impl_->buffer.GetSize()};
}

json_value::json_value(const void* node, const json_value* parent, std::string_view key,
                       std::size_t index)
    : node_(node), parent_(parent), key_(key), index_(index) {}

std::string json_value::path() const {
  if (parent_ == nullptr) return {};
  auto prefix = parent_->path();
  if (index_ != no_index) return fmt::format("{}[{}]", prefix, index_);
  return prefix.empty() ? std::string{key_} : fmt::format("{}.{}", prefix, key_);
}

void json_value::fail(std::string_view expected) const {
  if (parent_ == nullptr) throw decode_error(fmt::format("body is not {}", expected));
  throw decode_error(fmt::format("field '{}': expected {}", path(), expected));
}

bool json_value::is_null() const {
  return node(node_).IsNull();
}

std::optional<json_value> json_value::find(std::string_view name) const {
  const auto& object = node(node_);
  auto it = object.FindMember(rapidjson::Value{rapidjson::StringRef(name.data(), name.size())});
  if (it == object.MemberEnd() || it->value.IsNull()) return std::nullopt;
  return json_value{&it->value, this, name, no_index};
}

json_value json_value::member(std::string_view name) const {
  const auto& object = node(node_);
  auto it = object.FindMember(rapidjson::Value{rapidjson::StringRef(name.data(), name.size())});
  if (it == object.MemberEnd()) {
    auto prefix = path();
    throw decode_error(
        fmt::format("missing field '{}{}{}'", prefix, prefix.empty() ? "" : ".", name));
  }
  return json_value{&it->value, this, name, no_index};
}

std::string_view json_value::key() const {
  return key_;
}

void json_value::expect_object() const {
  if (!node(node_).IsObject()) fail("a JSON object");
}

std::size_t json_value::member_count() const {
  expect_object();
  return node(node_).MemberCount();
}

json_value json_value::member_at(std::size_t i) const {
  const auto& member = *(node(node_).MemberBegin() + static_cast<rapidjson::SizeType>(i));
  std::string_view name{member.name.GetString(), member.name.GetStringLength()};
  return json_value{&member.value, this, name, no_index};
}

std::size_t json_value::array_size() const {
  if (!node(node_).IsArray()) fail("an array");
  return node(node_).Size();
}

json_value json_value::element(std::size_t i) const {
  return json_value{&node(node_)[static_cast<rapidjson::SizeType>(i)], this, {}, i};
}

bool json_value::as_bool() const {
  if (!node(node_).IsBool()) fail("true or false");
  return node(node_).GetBool();
}

std::int64_t json_value::as_integer(std::int64_t min, std::int64_t max) const {
  const auto& v = node(node_);
  if (v.IsInt64()) {
    auto x = v.GetInt64();
    if (x >= min && x <= max) return x;
    throw decode_error(fmt::format("field '{}': {} is out of range [{}, {}]", path(), x, min, max));
  }
  if (v.IsUint64())
    throw decode_error(
        fmt::format("field '{}': {} is out of range [{}, {}]", path(), v.GetUint64(), min, max));
  fail("an integer");
}

std::uint64_t json_value::as_unsigned(std::uint64_t max) const {
  const auto& v = node(node_);
  if (v.IsUint64()) {
    auto x = v.GetUint64();
    if (x <= max) return x;
    throw decode_error(fmt::format("field '{}': {} is out of range [0, {}]", path(), x, max));
  }
  if (v.IsInt64())
    throw decode_error(
        fmt::format("field '{}': {} is out of range [0, {}]", path(), v.GetInt64(), max));
  fail("an integer");
}

double json_value::as_number(double max_magnitude) const {
  const auto& v = node(node_);
  if (!v.IsNumber()) fail("a number");
  auto x = v.GetDouble();
  if (std::fabs(x) > max_magnitude)
    throw decode_error(fmt::format("field '{}': {} is out of range [{}, {}]", path(), x,
                                   -max_magnitude, max_magnitude));
  return x;
}

std::string json_value::as_string() const {
  const auto& v = node(node_);
  if (!v.IsString()) fail("a string");
  return std::string{v.GetString(), v.GetStringLength()};
}

struct json_document::impl {
  rapidjson::Document document;
};

json_document::json_document(std::string_view text) : impl_(std::make_unique<impl>()) {
  auto& document = impl_->document;
  document.Parse<parse_flags>(text.data(), text.size());
  if (document.HasParseError())
    throw decode_error(fmt::format("malformed JSON at offset {}: {}", document.GetErrorOffset(),
                                   rapidjson::GetParseError_En(document.GetParseError())));
}

json_document::~json_document() = default;

json_value json_document::root() const {
  return json_value{&impl_->document, nullptr, {}, no_index};
}

}  // namespace depot::detail

namespace depot {

bool is_json_object(std::string_view text) {
  rapidjson::Document document;
  document.Parse<detail::parse_flags>(text.data(), text.size());
  return !document.HasParseError() && document.IsObject();
}

}  // namespace depot
