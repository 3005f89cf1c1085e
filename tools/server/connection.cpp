#include "connection.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qtf::serve {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

thread_local ConnectionState* t_connection = nullptr;
thread_local bool t_refuse = false;  // set while the accepting thread runs a connection it has no thread for

int ms_until(Clock::time_point t) {
  const auto ms = std::chrono::duration_cast<milliseconds>(t - Clock::now()).count();
  return ms < 0 ? 0 : ms > 1000000 ? 1000000 : (int)ms;
}

// An answer written straight to the socket (no request was parsed, or none may be): best effort.
void send_raw(int sock, int status, const char* reason, const char* message) {
  char body[512], head[256];
  const int nb = std::snprintf(body, sizeof body,
                               "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":null}}", message,
                               status >= 500 ? "server_error" : "invalid_request_error");
  const int nh = std::snprintf(head, sizeof head,
                               "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                               "Connection: close\r\n\r\n",
                               status, reason, nb);
  if (send(sock, head, (size_t)nh, MSG_NOSIGNAL | MSG_DONTWAIT) == nh)
    (void)!send(sock, body, (size_t)nb, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Closes after the answer has left: stop sending, read (and drop) what the client still sends for a
// moment, so that closing with unread data does not reset the connection before the answer arrives.
void linger_close(int sock) {
  shutdown(sock, SHUT_WR);
  char scratch[16384];
  const auto until = Clock::now() + milliseconds(200);
  for (size_t drained = 0; drained < (1u << 18);) {
    pollfd p{sock, POLLIN, 0};
    if (poll(&p, 1, ms_until(until)) <= 0) break;
    const ssize_t k = recv(sock, scratch, sizeof scratch, MSG_DONTWAIT);
    if (k <= 0) break;
    drained += (size_t)k;
  }
  close(sock);
}

// The connection's byte stream as httplib reads and writes it, with the limits of HttpLimits.
class ConnStream final : public httplib::Stream {
 public:
  ConnStream(int sock, const HttpLimits& lim, const GuardedServer& server, ConnectionState* state)
      : sock_(sock), lim_(lim), server_(server), state_(state) {}

  // Waits up to `idle` for the next request's first byte; false when none comes or the server stops.
  bool wait_for_request(milliseconds idle, const std::function<bool()>& stopping) {
    if (beg_ < end_) return true;
    const auto since = Clock::now(), until = since + idle;
    for (;;) {
      if (stopping()) return false;
      // Past 3/4 of the connection limit an idle connection is let go quickly.
      const auto limit = server_.under_pressure() ? std::min(until, since + milliseconds(200)) : until;
      const int wait = std::min(ms_until(limit), 100);
      pollfd p{sock_, POLLIN, 0};
      const int r = poll(&p, 1, wait);
      if (r < 0 && errno != EINTR) return false;
      if (r > 0) return (p.revents & POLLIN) != 0;
      if (Clock::now() >= limit) return false;
    }
  }

  void begin_request() {
    start_ = Clock::now();
    deadline_ = start_ + lim_.request_timeout;
    in_head_ = true;
    head_bytes_ = body_bytes_ = 0;
    crlf_ = 0;
    stalled_ = Clock::duration::zero();
    wrote_ = false;
  }
  bool wrote() const { return wrote_; }

  bool is_readable() const override {
    if (beg_ < end_) return true;
    pollfd p{sock_, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
  }

  bool is_writable() const override { return wait_writable(); }

  ssize_t read(char* ptr, size_t size) override {
    if (state_->fault != ReadFault::none) return -1;
    if (beg_ == end_) {
      const ssize_t k = fill();
      if (k <= 0) return k;
    }
    size_t give = std::min(size, end_ - beg_);
    if (in_head_) {  // byte by byte to the blank line that ends the head
      size_t i = 0;
      while (i < give) {
        if (head_bytes_ >= lim_.max_head) {
          if (i == 0) return fail(ReadFault::head_too_large);
          break;
        }
        const char c = buf_[beg_ + i];
        ++head_bytes_;
        ++i;
        crlf_ = c == '\r' ? (crlf_ == 2 ? 3 : 1) : c == '\n' && (crlf_ == 1 || crlf_ == 3) ? crlf_ + 1 : 0;
        if (crlf_ == 4) {
          in_head_ = false;
          break;
        }
      }
      give = i;
    } else {
      // The body as sent: max_body of content plus room for chunked framing.
      const size_t budget = lim_.max_body * 2 + 65536;
      if (body_bytes_ >= budget) return fail(ReadFault::body_too_large);
      give = std::min(give, budget - body_bytes_);
      body_bytes_ += give;
    }
    std::memcpy(ptr, buf_ + beg_, give);
    beg_ += give;
    return (ssize_t)give;
  }

  ssize_t write(const char* ptr, size_t size) override {
    size_t done = 0;
    while (done < size) {
      const ssize_t k = send(sock_, ptr + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k > 0) {
        done += (size_t)k;
        wrote_ = true;
      } else if (k < 0 && errno == EINTR) {
        continue;
      } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait_writable()) return -1;
      } else {
        return -1;
      }
    }
    return (ssize_t)size;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address(false, ip, port); }
  socket_t socket() const override { return sock_; }

 private:
  ssize_t fail(ReadFault f) {
    state_->fault = f;
    return -1;
  }

  // Reads what the socket has (waiting up to the request's deadline): bytes, 0 at end, -1 on error.
  ssize_t fill() {
    beg_ = end_ = 0;
    for (;;) {
      auto deadline = deadline_;
      // Under pressure a request head must come at once (a slow client cannot hold a thread long).
      if (in_head_ && server_.under_pressure()) deadline = std::min(deadline, start_ + milliseconds(1000));
      if (Clock::now() >= deadline) return fail(ReadFault::timeout);
      pollfd p{sock_, POLLIN, 0};
      const int r = poll(&p, 1, std::min(ms_until(deadline), 250));
      if (r < 0 && errno != EINTR) return -1;
      if (r <= 0) continue;
      const ssize_t k = recv(sock_, buf_, sizeof buf_, MSG_DONTWAIT);
      if (k > 0) {
        end_ = (size_t)k;
        return k;
      }
      if (k == 0) return 0;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
  }

  // Waits for room to write, counting the wait against the request's write_timeout.
  bool wait_writable() const {
    for (;;) {
      const auto left = lim_.write_timeout - std::chrono::duration_cast<milliseconds>(stalled_);
      if (left.count() <= 0) return false;
      pollfd p{sock_, POLLOUT, 0};
      const auto t0 = Clock::now();
      const int r = poll(&p, 1, (int)std::min<long long>(left.count(), 1000000));
      stalled_ += Clock::now() - t0;
      if (r > 0) return (p.revents & (POLLERR | POLLHUP | POLLNVAL)) == 0;
      if (r < 0 && errno != EINTR) return false;
    }
  }

  void address(bool remote, std::string& ip, int& port) const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    const int r = remote ? getpeername(sock_, (sockaddr*)&a, &len) : getsockname(sock_, (sockaddr*)&a, &len);
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (r == 0 && getnameinfo((sockaddr*)&a, len, host, sizeof host, serv, sizeof serv,
                              NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
      ip = host;
      port = std::atoi(serv);
    }
  }

  int sock_;
  const HttpLimits& lim_;
  const GuardedServer& server_;
  ConnectionState* state_;
  char buf_[16384];
  size_t beg_ = 0, end_ = 0;
  Clock::time_point start_, deadline_;
  bool in_head_ = true, wrote_ = false;
  size_t head_bytes_ = 0, body_bytes_ = 0;
  int crlf_ = 0;
  mutable Clock::duration stalled_{};
};

// One thread per connection, up to a cap; threads are kept for the next connection. When every thread
// is busy the connection is handled on the accepting thread, where GuardedServer refuses it at once.
class ConnectionThreads final : public httplib::TaskQueue {
 public:
  explicit ConnectionThreads(int max_threads) : max_(max_threads) {}

  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (idle_ > (int)jobs_.size() || (int)threads_.size() < max_) {
      jobs_.push_back(std::move(fn));
      if (idle_ >= (int)jobs_.size()) cv_.notify_one();
      else threads_.emplace_back([this] { work(); });
      return;
    }
    lock.unlock();
    t_refuse = true;  // never served here: that would stop the accept loop
    fn();
    t_refuse = false;
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;
      std::function<void()> fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  const int max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  int idle_ = 0;
  bool stop_ = false;
};

}  // namespace

ConnectionState* current_connection() { return t_connection; }

GuardedServer::GuardedServer(const HttpLimits& limits) : limits_(limits) {
  const int threads = limits_.max_connections;
  new_task_queue = [threads] { return new ConnectionThreads(threads); };
  set_keep_alive_timeout(std::max<time_t>(1, (time_t)(limits_.keep_alive.count() / 1000)));
  set_keep_alive_max_count(100);
  set_payload_max_length(limits_.max_body);
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  struct Count {
    std::atomic<int>& n;
    ~Count() { --n; }
  } count{live_};
  if (++live_ > limits_.max_connections || t_refuse) {
    send_raw(sock, 503, "Service Unavailable", "too many connections; retry later (see --max-connections)");
    close(sock);
    return false;
  }
  ConnectionState state;
  t_connection = &state;
  ConnStream strm(sock, limits_, *this, &state);
  const auto stopping = [this] { return svr_sock_ == INVALID_SOCKET; };
  bool ok = false;
  for (size_t served = 0; served < keep_alive_max_count_; ++served) {
    if (!strm.wait_for_request(served == 0 ? limits_.request_timeout : limits_.keep_alive, stopping)) break;
    state = ConnectionState();
    strm.begin_request();
    bool closed = false;
    ok = process_request(strm, served + 1 == keep_alive_max_count_, closed, nullptr);
    if (!strm.wrote()) {  // the request line itself failed: answer here
      if (state.fault == ReadFault::head_too_large)
        send_raw(sock, 431, "Request Header Fields Too Large", "the request head is too large");
      else if (state.fault == ReadFault::timeout)
        send_raw(sock, 408, "Request Timeout", "the request did not arrive in time (see --request-timeout)");
    }
    if (!ok || closed || state.close || state.fault != ReadFault::none) break;
  }
  t_connection = nullptr;
  linger_close(sock);
  return ok;
}

}  // namespace qtf::serve
