// A fixed pool of worker threads for one context (the host layer: the engine core starts no threads).
// Started once with the context; eval hands it jobs through Workers without allocating. Every worker
// takes part in every job (it takes tasks until none are left, then checks in), and a job returns only
// when all have checked in, so no worker is ever still inside the previous job when the next one is set
// up. Idle workers spin briefly, then sleep on a condition variable.
#pragma once
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "runtime/context.h"

namespace qtf::host {

class ThreadPool {
 public:
  ThreadPool() = default;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() { stop(); }

  // n_threads in all: the caller of run() is thread 0, n_threads - 1 workers are started here.
  Status start(int n_threads);
  void stop();
  const Workers* workers() const { return &workers_; }

 private:
  static void run_tasks(void* self, int n_tasks, void (*task)(void* arg, int i, int thread), void* arg);
  void work(int thread);
  void worker_loop(int thread);

  Workers workers_;
  std::thread threads_[kMaxThreads];
  int n_started_ = 0;
  // The current job: written by run_tasks before it publishes a new generation.
  std::atomic<void (*)(void*, int, int)> task_{nullptr};
  std::atomic<void*> arg_{nullptr};
  std::atomic<int> n_tasks_{0};
  std::atomic<int> next_{0}, arrived_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> quit_{false};
  std::mutex mu_;
  std::condition_variable wake_;
};

}  // namespace qtf::host
