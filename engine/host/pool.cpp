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
  jobs_ = 0;
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

constexpr uint64_t kField = (1u << 20) - 1;  // task count and next task: 20 bits each
inline uint64_t generation_of(uint64_t job) { return job >> 40; }

void ThreadPool::work(int thread, uint64_t generation) {
  for (;;) {
    uint64_t job = job_.load(std::memory_order_acquire), next;
    do {  // claim the next task of this generation's job, if any is left
      next = job & kField;
      if (generation_of(job) != generation || next >= ((job >> 20) & kField)) return;
    } while (!job_.compare_exchange_weak(job, job + 1, std::memory_order_acq_rel, std::memory_order_acquire));
    // The job cannot end (nor the next one be set up) before this claimed task is done.
    task_.load(std::memory_order_acquire)(arg_.load(std::memory_order_acquire), (int)next, thread);
    done_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker_loop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_of(job_.load(std::memory_order_acquire)) == seen && !quit_.load(std::memory_order_acquire)) {
      if (++spins < kSpins) {
        cpu_relax();
        continue;
      }
      std::unique_lock<std::mutex> lk(mu_);
      sleepers_.fetch_add(1);
      wake_.wait(lk, [&] { return generation_of(job_.load()) != seen || quit_.load(); });
      sleepers_.fetch_sub(1);
    }
    if (quit_.load(std::memory_order_acquire)) return;
    seen = generation_of(job_.load(std::memory_order_acquire));
    work(thread, seen);
  }
}

void ThreadPool::run_tasks(void* self, int n_tasks, void (*task)(void* arg, int i, int thread), void* arg) {
  ThreadPool* p = static_cast<ThreadPool*>(self);
  if ((uint64_t)n_tasks > kField) {  // more tasks than the job word holds: on this thread
    for (int i = 0; i < n_tasks; ++i) task(arg, i, 0);
    return;
  }
  ++p->jobs_;
  p->task_.store(task, std::memory_order_relaxed);
  p->arg_.store(arg, std::memory_order_relaxed);
  p->done_.store(0, std::memory_order_relaxed);
  const uint64_t generation = (generation_of(p->job_.load(std::memory_order_relaxed)) + 1) & 0xffffff;
  p->job_.store(generation << 40 | (uint64_t)n_tasks << 20);  // seq_cst: publishes the job; ordered
  if (p->sleepers_.load() > 0) {                               // against sleepers_ (no lost wake-up)
    std::lock_guard<std::mutex> lk(p->mu_);
    p->wake_.notify_all();
  }
  p->work(0, generation);
  for (int spins = 0; p->done_.load(std::memory_order_acquire) < n_tasks;) {
    if (++spins < kSpins) cpu_relax();
    else std::this_thread::yield();  // a worker holding a task may be waiting for this core
  }
}

}  // namespace qtf::host
