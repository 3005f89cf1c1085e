#include "host/pool.h"

namespace qtf::host {
namespace {
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}
constexpr int kSpins = 1 << 14;  // ~tens of microseconds of polling before a worker sleeps
}  // namespace

Status ThreadPool::start(int n_threads) {
  stop();
  if (n_threads < 1 || n_threads > kMaxThreads)
    return Status::error(Err::invalid_argument, "thread count %d is outside 1..%d", n_threads, kMaxThreads);
  quit_ = false;
  workers_ = Workers{};
  for (int t = 1; t < n_threads; ++t) {
    threads_[t] = std::thread([this, t] { worker_loop(t); });
    n_started_ = t;
  }
  workers_.threads = n_threads;
  workers_.run = n_threads > 1 ? &ThreadPool::run_tasks : nullptr;
  workers_.impl = this;
  return Status::success();
}

void ThreadPool::stop() {
  if (n_started_ > 0) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
    }
    wake_.notify_all();
    for (int t = 1; t <= n_started_; ++t) threads_[t].join();
  }
  n_started_ = 0;
  workers_ = Workers{};
}

void ThreadPool::work(int thread) {
  void (*task)(void*, int, int) = task_.load(std::memory_order_acquire);
  void* arg = arg_.load(std::memory_order_acquire);
  const int n = n_tasks_.load(std::memory_order_acquire);
  for (int i; (i = next_.fetch_add(1, std::memory_order_acq_rel)) < n;) task(arg, i, thread);
}

void ThreadPool::worker_loop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && !quit_.load(std::memory_order_acquire)) {
      if (++spins < kSpins) {
        cpu_relax();
        continue;
      }
      std::unique_lock<std::mutex> lk(mu_);
      sleepers_.fetch_add(1);
      wake_.wait(lk, [&] { return generation_.load() != seen || quit_.load(); });
      sleepers_.fetch_sub(1);
    }
    if (quit_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    work(thread);
    arrived_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run_tasks(void* self, int n_tasks, void (*task)(void* arg, int i, int thread), void* arg) {
  ThreadPool* p = static_cast<ThreadPool*>(self);
  // No worker is inside work() now (the previous job waited for all to check in).
  p->task_.store(task, std::memory_order_relaxed);
  p->arg_.store(arg, std::memory_order_relaxed);
  p->n_tasks_.store(n_tasks, std::memory_order_relaxed);
  p->next_.store(0, std::memory_order_relaxed);
  p->arrived_.store(0, std::memory_order_relaxed);
  p->generation_.fetch_add(1);  // seq_cst: publishes the job; ordered against sleepers_ (no lost wake-up)
  if (p->sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lk(p->mu_);
    p->wake_.notify_all();
  }
  p->work(0);
  while (p->arrived_.load(std::memory_order_acquire) < p->n_started_) cpu_relax();
}

}  // namespace qtf::host
