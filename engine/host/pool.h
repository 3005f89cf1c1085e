// A fixed pool of worker threads for one context (the host layer: the engine core starts no threads).
// Started once with the context; eval hands it jobs through Workers without allocating. A job is one
// atomic word (generation, task count, next task): threads claim tasks by compare-and-swap on it, so a
// worker late from an earlier job can never claim a task of the next one, and a job returns when its
// tasks are done, whether or not every worker woke up for it (a descheduled worker holds nothing up).
// Idle workers spin briefly, then sleep on a condition variable.
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
  // Jobs handed to the workers since start (parallel_for calls that woke them; work run inline is not
  // one): the hand-offs a decoded token pays, for qtf bench and the tests. Only the thread that calls
  // run() (the context's) writes it, so a plain counter.
  uint64_t jobs() const { return jobs_; }

 private:
  static void run_tasks(void* self, int n_tasks, void (*task)(void* arg, int i, int thread), void* arg);
  void worker_loop(int thread);

  Workers workers_;
  std::thread threads_[kMaxThreads];
  int n_started_ = 0;
  uint64_t jobs_ = 0;
  void work(int thread, uint64_t generation);
  // The current job: task_ and arg_ are written before the job word publishes them.
  std::atomic<void (*)(void*, int, int)> task_{nullptr};
  std::atomic<void*> arg_{nullptr};
  // Every claim writes job_ and every finished task done_: each on a cache line of its own, so the
  // claims and the ends of tasks (and the sleepers' count) do not pass one line between the cores.
  alignas(64) std::atomic<uint64_t> job_{0};  // generation << 40 | n_tasks << 20 | next task
  alignas(64) std::atomic<int> done_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> quit_{false};
  std::mutex mu_;
  std::condition_variable wake_;
};

}  // namespace qtf::host
