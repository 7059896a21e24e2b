// Private to distributed/ps: moving wire.h messages in and out of ZeroMQ
// frames, shared by the server and the client. Not installed (needs zmq.hpp).
#pragma once

#include <zmq.hpp>

#include <memory>
#include <string>
#include <vector>

#include "distributed/ps/wire.h"

namespace ndflow::ps::detail {

// Sends `m` as [identity], header, payloads. Payload frames reference the
// tensors' memory (no copy): each frame holds a Tensor handle that ZeroMQ's
// I/O thread releases once the bytes are on the wire.
// NOTE: so a sender must not modify a pushed tensor until its reply arrives
// (the peer replies only after it received every frame).
inline bool send_message(zmq::socket_t& s, const std::string* identity, const Message& m,
                         zmq::send_flags flags = zmq::send_flags::none) {
  Encoded e = encode(m);
  const auto more = flags | zmq::send_flags::sndmore;
  if (identity && !s.send(zmq::buffer(*identity), more)) return false;
  if (!s.send(zmq::buffer(e.header), e.payloads.empty() ? flags : more)) return false;
  for (size_t i = 0; i < e.payloads.size(); ++i) {
    const Tensor& t = e.payloads[i];
    zmq::message_t frame;  // NOTE: an empty tensor may have no data pointer; zmq wants none then
    if (t.nbytes() > 0)
      frame = zmq::message_t(t.raw_data(), t.nbytes(),
                             [](void*, void* hint) { delete static_cast<Tensor*>(hint); }, new Tensor(t));
    if (!s.send(frame, i + 1 == e.payloads.size() ? flags : more)) return false;
  }
  return true;
}

// Receives every frame of one message, or nothing when none is waiting.
inline bool recv_frames(zmq::socket_t& s, std::vector<zmq::message_t>& frames) {
  frames.clear();
  zmq::message_t part;
  if (!s.recv(part, zmq::recv_flags::dontwait)) return false;
  bool more = part.more();
  frames.push_back(std::move(part));
  while (more) {
    // The remaining parts of a multipart message arrive atomically with the first.
    zmq::message_t next;
    (void)s.recv(next, zmq::recv_flags::none);
    more = next.more();
    frames.push_back(std::move(next));
  }
  return true;
}

// Decodes frames[first..] (header, payloads). The payload frames move into
// shared owners so that decoded tensors alias them instead of copying.
inline Message decode_frames(std::vector<zmq::message_t>& frames, size_t first) {
  if (frames.size() <= first) fail<ValueError>("[ps.wire] malformed message: no header frame");
  Frame header{frames[first].data(), frames[first].size(), nullptr};
  std::vector<Frame> payloads;
  for (size_t i = first + 1; i < frames.size(); ++i) {
    auto owner = std::make_shared<zmq::message_t>(std::move(frames[i]));
    payloads.push_back({owner->data(), owner->size(), owner});
  }
  return decode(header, payloads);
}

}  // namespace ndflow::ps::detail
