// The worker side of the parameter server (client.h): a DEALER socket, the
// table of outstanding requests, and the silence timeout.
#include "distributed/ps/client.h"

#include <bit>
#include <map>
#include <set>

#include "distributed/ps/zmq_internal.h"

namespace ndflow::ps {

using SteadyClock = std::chrono::steady_clock;

struct ClientState {
  // A request on the wire, kept until its reply so that it can be sent
  // again to a restarted server.
  struct Outstanding {
    uint64_t ticket;  // the Handle's; 0 for the client's own re-handshake
    std::string what;
    Message message;
  };

  ClientOptions opt;
  zmq::context_t ctx;
  zmq::socket_t sock;
  uint64_t next_request = 1;  // wire ids; a resent request gets a new one
  uint64_t next_ticket = 1;   // Handle ids, stable across resends
  uint64_t next_seq = 1;      // pushes are numbered 1, 2, ... per incarnation (exactly-once on the server)
  uint64_t last_hello = 0;    // wire id of the latest handshake
  int64_t clock = 0;
  uint64_t rehandshakes = 0;
  std::map<uint64_t, Outstanding> waiting;  // by wire id, in sending order
  std::map<uint64_t, Message> arrived;      // by ticket: replies not yet collected by their handle
  std::set<uint64_t> abandoned;             // tickets of handles dropped before their reply
  std::string deferred_error;               // the error reply of an abandoned request

  explicit ClientState(ClientOptions o) : opt(std::move(o)), sock(ctx, zmq::socket_type::dealer) {}

  std::string who() const { return str_cat("[ps.client worker ", opt.worker, "]"); }

  void transmit(Message& m, const std::string& what, zmq::send_flags flags = zmq::send_flags::none) {
    m.request = next_request++;
    // encode() inside checks the message, so a bad table name or dtype fails here, before the network.
    if (!detail::send_message(sock, nullptr, m, flags) && flags == zmq::send_flags::none)
      fail<TimeoutError>(who(), " could not send ", what, " to server ", opt.address, " within ",
                         opt.timeout.count(), " ms (its queue is full: is the server running?)");
  }

  uint64_t send(Message m, std::string what) {
    if (!deferred_error.empty()) {
      std::string e = std::move(deferred_error);
      deferred_error.clear();
      fail<ValueError>(e);
    }
    m.worker = opt.worker;
    m.incarnation = opt.incarnation;
    m.clock = m.type == MsgType::clock ? clock + 1 : clock;
    if (m.type == MsgType::hello) m.text = opt.secret;
    transmit(m, what);
    if (m.type == MsgType::hello) last_hello = m.request;
    const uint64_t ticket = next_ticket++;
    waiting[m.request] = {ticket, std::move(what), std::move(m)};
    return ticket;
  }

  // The server answered a request sent after our latest handshake with "no
  // session": it was restarted. Handshake again, at this worker's clock (a
  // server restored from an older checkpoint resumes it there), and resend
  // everything unanswered, in the original order and under new wire ids:
  // ZeroMQ delivers them after the handshake, pushes keep their sequence
  // numbers (a push the restored server already has is not applied twice),
  // and the stale "no session" replies of the old ids are then ignored.
  void handshake_again() {
    rehandshakes++;
    std::map<uint64_t, Outstanding> old = std::move(waiting);
    waiting.clear();
    Message hello{.type = MsgType::hello, .worker = opt.worker, .incarnation = opt.incarnation, .clock = clock,
                  .text = opt.secret};
    transmit(hello, "the handshake");
    last_hello = hello.request;
    waiting[hello.request] = {0, "the handshake with a restarted server", std::move(hello)};
    for (auto& [id, o] : old) {
      if (o.ticket == 0) continue;  // an earlier handshake: superseded
      transmit(o.message, o.what);
      const uint64_t request = o.message.request;
      waiting[request] = std::move(o);
    }
  }

  // Files one received message under its request.
  void dispatch(std::vector<zmq::message_t>& frames) {
    Message m;
    try {
      m = detail::decode_frames(frames, 0);
    } catch (const ValueError& e) {
      fail<ValueError>(who(), " malformed reply from server ", opt.address, ": ", e.what());
    }
    if (m.type != MsgType::reply && m.type != MsgType::error)
      fail<ValueError>(who(), " server ", opt.address, " sent a ", msg_type_name(m.type), " instead of a reply");
    if (m.type == MsgType::error && m.value == int64_t(ErrorCode::no_session)) {
      if (m.request > last_hello) handshake_again();
      return;  // else: the answer to a request already sent again
    }
    auto w = waiting.find(m.request);
    if (w == waiting.end()) {
      // A ping's answer. A refused ping (this incarnation was replaced, say)
      // means the requests it guards will never be answered either.
      if (m.type == MsgType::error && m.request > last_hello)
        fail<ValueError>(who(), " ", m.text, " (server ", opt.address, ")");
      return;
    }
    const uint64_t ticket = w->second.ticket;
    waiting.erase(w);
    if (ticket == 0) {
      if (m.type == MsgType::error)
        fail<ValueError>(who(), " server ", opt.address, " was restarted and refused to take this worker back: ",
                         m.text);
      return;
    }
    if (abandoned.erase(ticket)) {
      if (m.type == MsgType::error && deferred_error.empty())
        deferred_error = str_cat(m.text, " (server ", opt.address, ")");
      return;
    }
    arrived[ticket] = std::move(m);
  }

  bool waiting_for(uint64_t ticket) const {
    for (const auto& [id, o] : waiting)
      if (o.ticket == ticket) return true;
    return false;
  }
  std::string what_of(uint64_t ticket) const {
    for (const auto& [id, o] : waiting)
      if (o.ticket == ticket) return o.what;
    return "a request";
  }

  // Receives until the request of `ticket` is answered. Silence is measured
  // from the start of this wait, so time the worker spent computing does not
  // count.
  Message wait_for(uint64_t ticket) {
    // A pull may legitimately wait on a slow worker: pings tell a live
    // server from a dead one, and a restarted one from both (it answers
    // "no session").
    const auto ping_every = std::min<std::chrono::milliseconds>(opt.timeout / 2, std::chrono::milliseconds(500));
    auto heard = SteadyClock::now();
    auto pinged = heard;
    std::vector<zmq::message_t> frames;
    for (;;) {
      auto a = arrived.find(ticket);
      if (a != arrived.end()) {
        Message m = std::move(a->second);
        arrived.erase(a);
        return m;
      }
      const auto now = SteadyClock::now();
      if (now - heard >= opt.timeout)
        fail<TimeoutError>(who(), " server ", opt.address, " sent nothing for ", opt.timeout.count(),
                           " ms while waiting for ", what_of(ticket),
                           ": is it still running? (the limit is ClientOptions::timeout)");
      if (now - std::max(heard, pinged) >= ping_every) {
        // dontwait: a dead server must not block us here.
        Message ping{.type = MsgType::ping, .worker = opt.worker, .incarnation = opt.incarnation, .clock = clock};
        transmit(ping, "a ping", zmq::send_flags::dontwait);
        pinged = now;
      }
      const auto next = std::min(heard + opt.timeout, std::max(heard, pinged) + ping_every);
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(next - now) + std::chrono::milliseconds(1);
      zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
      while (detail::recv_frames(sock, frames)) {
        heard = SteadyClock::now();
        dispatch(frames);
      }
    }
  }

  // Turns a reply into the caller's result or throws the server's error.
  Tensor result(Message m, int64_t* slowest) {
    if (m.type == MsgType::error) fail<ValueError>(m.text, " (server ", opt.address, ")");
    if (slowest) *slowest = m.value;
    return m.tensors.empty() ? Tensor() : m.tensors[0];
  }
};

void Handle::abandon() {
  if (!s_ || done_) return;
  auto a = s_->arrived.find(request_);
  if (a != s_->arrived.end()) {
    if (a->second.type == MsgType::error && s_->deferred_error.empty())
      s_->deferred_error = str_cat(a->second.text, " (server ", s_->opt.address, ")");
    s_->arrived.erase(a);
  } else if (s_->waiting_for(request_)) {
    s_->abandoned.insert(request_);
  }
}

Handle::~Handle() { abandon(); }

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    abandon();
    s_ = std::move(o.s_);
    request_ = o.request_;
    result_ = std::move(o.result_);
    slowest_ = o.slowest_;
    done_ = o.done_;
  }
  return *this;
}

Tensor Handle::wait() {
  NDF_CHECK(s_, ValueError, "[ps.client] wait() on an empty Handle");
  if (!done_) {
    result_ = s_->result(s_->wait_for(request_), &slowest_);
    done_ = true;
  }
  return result_;
}

bool Handle::ready() {
  if (!s_ || done_) return done_;
  std::vector<zmq::message_t> frames;
  while (detail::recv_frames(s_->sock, frames)) s_->dispatch(frames);
  return s_->arrived.count(request_) > 0;
}

Client::Client(ClientOptions options) {
  NDF_CHECK(!options.address.empty(), ValueError,
            "[ps.client] ClientOptions::address is empty (the server's endpoint)");
  NDF_CHECK(options.timeout.count() > 0, ValueError, "[ps.client] ClientOptions::timeout must be positive");
  s_ = std::make_shared<ClientState>(std::move(options));
  ClientState& s = *s_;
  // linger 0: closing never waits on a dead server; sndtimeo: a send to a full queue fails instead of hanging.
  s.sock.set(zmq::sockopt::linger, 0);
  s.sock.set(zmq::sockopt::sndtimeo, static_cast<int>(s.opt.timeout.count()));
  try {
    s.sock.connect(s.opt.address);
  } catch (const zmq::error_t& e) {
    fail<ValueError>(s.who(), " cannot connect to server '", s.opt.address, "': ", e.what());
  }
  const uint64_t r = s.send(Message{.type = MsgType::hello}, "the handshake");
  Message reply = s.wait_for(r);
  s.result(reply, nullptr);
  s.clock = reply.clock;  // a rejoining worker continues at the server's clock
}

Client::~Client() = default;

Handle Client::push(const std::string& table, const Tensor& grad) {
  Message m{.type = MsgType::push_dense, .seq = s_->next_seq, .table = table, .tensors = {grad}};
  const uint64_t r = s_->send(std::move(m), str_cat("push to table '", table, "'"));
  s_->next_seq++;  // only once sent: a refused encode does not leave a gap
  return Handle(s_, r);
}

Handle Client::push_rows(const std::string& table, const Tensor& ids, const Tensor& rows) {
  Message m{.type = MsgType::push_rows, .seq = s_->next_seq, .table = table, .tensors = {ids, rows}};
  const uint64_t r = s_->send(std::move(m), str_cat("push of rows to table '", table, "'"));
  s_->next_seq++;
  return Handle(s_, r);
}

Handle Client::pull(const std::string& table) {
  return Handle(s_, s_->send(Message{.type = MsgType::pull_dense, .table = table},
                             str_cat("pull of table '", table, "' at clock ", s_->clock)));
}

Handle Client::pull_rows(const std::string& table, const Tensor& ids) {
  return Handle(s_, s_->send(Message{.type = MsgType::pull_rows, .table = table, .tensors = {ids}},
                             str_cat("pull of rows of table '", table, "' at clock ", s_->clock)));
}

Handle Client::set_lr(const std::string& table, double lr) {
  return Handle(s_, s_->send(Message{.type = MsgType::set_lr, .value = std::bit_cast<int64_t>(lr), .table = table},
                             str_cat("set_lr(", lr, ") of table '", table, "'")));
}

Handle Client::clock_async() {
  const uint64_t r = s_->send(Message{.type = MsgType::clock}, str_cat("clock ", s_->clock + 1));
  s_->clock++;  // later requests are at the new clock; the server takes them in order
  return Handle(s_, r);
}

void Client::clock() { clock_async().wait(); }

Handle Client::barrier() {
  return Handle(s_, s_->send(Message{.type = MsgType::barrier}, str_cat("the barrier at clock ", s_->clock)));
}

int64_t Client::ping() {
  const uint64_t r = s_->send(Message{.type = MsgType::ping}, "a ping");
  int64_t slowest = 0;
  s_->result(s_->wait_for(r), &slowest);
  return slowest;
}

uint64_t Client::rehandshakes() const { return s_->rehandshakes; }

int64_t Client::current_clock() const { return s_->clock; }
const std::string& Client::address() const { return s_->opt.address; }

}  // namespace ndflow::ps
