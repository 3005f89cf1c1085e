// The connection layer of `qtf serve`: cpp-httplib parses requests and writes responses, but Debian's
// libcpp-httplib (0.11, a compiled library: its CPPHTTPLIB_* limits are fixed inside it) bounds neither
// a request's header count nor the time a client may take to send it, and its fixed thread pool is held
// by idle or trickling sockets. GuardedServer takes each connection itself:
// - one thread per connection, up to max_connections; beyond that a connection gets 503 at once, and
//   past 3/4 of it idle keep-alive waits and unfinished request heads are cut short;
// - a request (head and body) must arrive within request_timeout in total, not per byte;
// - a request head is at most max_head bytes; the body at most max_body (+ chunk framing) bytes read;
// - a response may wait on a client that does not read for write_timeout in total;
// - a connection is closed after any error answer (the body may be unread).
#pragma once
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>

namespace qtf::serve {

struct HttpLimits {
  size_t max_head = 16384;  // request line and headers, bytes
  int max_headers = 64;
  size_t max_body = 1 << 20;
  std::chrono::milliseconds request_timeout{10000};  // head + body of one request
  std::chrono::milliseconds write_timeout{10000};    // total stall on a client that does not read
  std::chrono::milliseconds keep_alive{5000};        // idle wait for the next request on a connection
  int max_connections = 128;
};

// What went wrong reading the current request (set by the connection's stream).
enum class ReadFault { none, timeout, head_too_large, body_too_large };

// The connection serving the calling thread's request: handlers ask it to close after the answer.
struct ConnectionState {
  ReadFault fault = ReadFault::none;
  bool close = false;
};
ConnectionState* current_connection();  // null outside a request

class GuardedServer : public httplib::Server {
 public:
  explicit GuardedServer(const HttpLimits& limits);
  const HttpLimits& limits() const { return limits_; }
  int connections() const { return live_.load(); }
  bool under_pressure() const { return live_.load() * 4 > limits_.max_connections * 3; }

 private:
  bool process_and_close_socket(socket_t sock) override;
  HttpLimits limits_;
  std::atomic<int> live_{0};
};

}  // namespace qtf::serve
