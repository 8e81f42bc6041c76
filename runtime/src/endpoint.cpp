// Endpoints and the sorting of outgoing envelopes by where they are stored.
#include "depot/runtime/endpoint.hpp"

#include "depot/runtime/kafka.hpp"

#include <iterator>

namespace depot {

const char* to_string(endpoint_mode mode) {
  return mode == endpoint_mode::durable ? "durable" : "buffered";
}

const char* to_string(cloudevents_mode mode) {
  return mode == cloudevents_mode::binary ? "binary" : "structured";
}

const char* to_string(offset_store store) {
  return store == offset_store::kafka ? "kafka" : "postgres";
}

void outgoing_envelopes::add(const endpoint& to, envelope e) {
  if (!to.local()) {
    e.queue = to.uri();
    outbox.push_back(std::move(e));
  } else {
    e.queue = to.name;
    (to.mode == endpoint_mode::durable ? inbox : memory).push_back(std::move(e));
  }
}

void outgoing_envelopes::append(outgoing_envelopes&& other) {
  auto move_all = []<class T>(std::vector<T>& to, std::vector<T>& from) {
    to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
    from.clear();
  };
  move_all(inbox, other.inbox);
  move_all(outbox, other.outbox);
  move_all(memory, other.memory);
  move_all(replies, other.replies);
}

} // namespace depot
