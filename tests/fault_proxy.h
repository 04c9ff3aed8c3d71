// tests/fault_proxy.h — a TCP proxy on 127.0.0.1 that forwards to an upstream
// port and breaks every n-th connection, cycling through four faults:
//   reset   — reads part of the request, then closes both sides;
//   503     — answers "503 Slow Down" (an S3 error document) without forwarding;
//   delay   — waits 300 ms, then forwards normally;
//   cut     — forwards the request, then closes after 100 bytes of the answer.
// With the client making one request per connection, every n-th request meets
// a fault. Counters say how many of each happened. Separately, `flip_bodies`
// damages the first request body byte of every n-th connection (n =
// flip_every) on its way upstream, as a bad NIC or memory would.
// Thread-safety: the knobs and counters are atomics; the destructor stops and
// joins every thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace blkvault::test {

class FaultProxy {
 public:
  enum Fault { kReset = 0, kSlowDown = 1, kDelay = 2, kCut = 3 };

  explicit FaultProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 64);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FaultProxy() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    std::lock_guard g(mu_);
    for (auto& t : workers_) t.join();
  }
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  std::atomic<int> every{0};  // 0: no faults
  std::atomic<int> flip_every{0};  // 0: no damaged bodies
  std::atomic<int> connections{0};
  std::atomic<int> faults[4] = {0, 0, 0, 0};
  std::atomic<int> flipped{0};  // request bodies damaged

 private:
  static int connect_upstream(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  void accept_loop() {
    while (!stop_) {
      int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c < 0) {
        if (stop_) return;
        continue;
      }
      const int k = ++connections;
      const int n = every.load();
      int fault = -1;
      if (n > 0 && k % n == 0) fault = (k / n) % 4;
      const int f = flip_every.load();
      const bool flip = f > 0 && k % f == 0;
      std::lock_guard g(mu_);
      workers_.emplace_back([this, c, fault, flip] { serve(c, fault, flip); });
    }
  }

  // Finds the end of the first request's headers ("\r\n\r\n") across reads and
  // flips the body byte after it, once.
  struct Flipper {
    bool armed = false;
    uint32_t last4 = 0;
    void apply(char* buf, ssize_t n, std::atomic<int>& count) {
      for (ssize_t i = 0; armed && i < n; ++i) {
        if (last4 == 0x0d0a0d0a) {
          buf[i] = static_cast<char>(buf[i] ^ 0x01);
          armed = false;
          ++count;
          break;
        }
        last4 = (last4 << 8) | static_cast<uint8_t>(buf[i]);
      }
    }
  };

  // Copies what is readable from `from` to `to`; false at EOF or error.
  bool pump(int from, int to, long* budget, Flipper* flipper = nullptr) {
    char buf[65536];
    ssize_t n = ::read(from, buf, sizeof buf);
    if (n <= 0) return false;
    if (flipper != nullptr) flipper->apply(buf, n, flipped);
    if (budget != nullptr && *budget >= 0 && n > *budget) n = *budget;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(to, buf + off, static_cast<size_t>(n - off));
      if (w <= 0) return false;
      off += w;
    }
    if (budget != nullptr && *budget >= 0) {
      *budget -= n;
      if (*budget == 0) return false;
    }
    return true;
  }

  void serve(int c, int fault, bool flip) {
    if (fault == kReset) {
      char buf[512];
      (void)::read(c, buf, sizeof buf);
      faults[kReset]++;
      linger_close(c);
      return;
    }
    if (fault == kSlowDown) {
      std::string got;
      char buf[4096];
      while (got.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      const std::string body =
          "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
      const std::string resp = "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      (void)::write(c, resp.data(), resp.size());
      faults[kSlowDown]++;
      ::shutdown(c, SHUT_WR);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ::close(c);
      return;
    }
    if (fault == kDelay) {
      faults[kDelay]++;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    int u = connect_upstream(upstream_port_);
    if (u < 0) {
      ::close(c);
      return;
    }
    long down_budget = fault == kCut ? 100 : -1;
    if (fault == kCut) faults[kCut]++;
    Flipper flipper{flip};
    pollfd p[2] = {{c, POLLIN, 0}, {u, POLLIN, 0}};
    while (!stop_) {
      if (::poll(p, 2, 200) < 0) break;
      if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && !pump(c, u, nullptr, &flipper)) break;
      if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) && !pump(u, c, &down_budget)) break;
    }
    if (fault == kCut) {
      linger_close(c);
    } else {
      ::close(c);
    }
    ::close(u);
  }

  // Closes with a reset (RST), as a dropped connection looks to the client.
  static void linger_close(int fd) {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
  }

  int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
};

}  // namespace blkvault::test
