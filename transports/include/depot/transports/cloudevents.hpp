// CloudEvents 1.0 over Kafka (the Kafka protocol binding): an envelope as a record in binary
// mode (attributes as ce_ headers, the JSON data as the value) or structured mode (one
// application/cloudevents+json value), and a record of either mode back as an envelope. Plain
// data: no librdkafka here, so the mapping is tested on its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "depot/runtime/envelope.hpp"
#include "depot/runtime/kafka.hpp"

namespace depot::cloudevents {

/// A Kafka record as the binding sees it.
struct record {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::optional<std::string> key; ///< none: a null key
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers; ///< in record order
};

/// The content type of a structured-mode record.
inline constexpr std::string_view structured_content_type = "application/cloudevents+json";

/// Envelope `e`, stored at `e.received_at`, as a CloudEvent of `source` (a URI) on `topic`:
/// id = the envelope id, type = its message type, time = when it was stored, the record key =
/// its message key (also the partitionkey extension), else its id. Its headers travel as
/// extensions: correlation-id as correlationid, causation-id as causationid, traceparent,
/// tracestate, subject as the subject attribute, and every other header whose name is a valid
/// extension name (lower-case letters and digits) as it is; the rest (reply-to, depot-*) stay
/// home.
[[nodiscard]] record to_record(const envelope& e, std::string topic, std::string_view source,
                               cloudevents_mode mode);

/// The envelope record `r` carries: the mode is chosen by its content-type header. id = the
/// event id when it is a UUID, else a UUID derived from source and id (the original is kept in
/// header cloudevents-id), so a redelivered event has the same envelope id; message_type = its
/// type; body = its data, as it came (the caller decodes it as its type); headers = source and
/// the extensions with valid names (the inverse of to_record: an event cannot set reply-to or
/// any other header of depot's own). queue and key are left to the caller, who routes it.
/// Throws decode_error naming the missing or invalid attribute, or saying why the data cannot
/// be JSON (its content type, data_base64 that is not base64).
[[nodiscard]] envelope from_record(const record& r);

/// A version-8 UUID named by `name` in `space` (two FNV-1a hashes): the same name, the same id.
/// How an event id that is not a UUID, or a record that is no event, gets a stable envelope id.
[[nodiscard]] std::string name_based_id(std::string_view space, std::string_view name);

/// RFC 4648 base64 with padding.
[[nodiscard]] std::string base64_encode(std::string_view bytes);
/// The bytes of base64 `text`, or nullopt when it is not base64.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

} // namespace depot::cloudevents
