// A fixed set of threads running submitted jobs in order of submission.
//
// Threads: submit() may be called from any thread, with or without the GIL (it never takes
// it). stop() (and the destructor) may be called from any thread but a pool thread; it waits
// for the queued jobs and joins the threads, so it must be called without the GIL when jobs
// may take it. Jobs run on the pool's threads with no lock of the pool held, so a job may take
// the GIL.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fastserve {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();  // stop()s
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // False once stopped (the job is dropped).
  bool submit(std::function<void()> job);
  // Runs the jobs already queued, then joins every thread. Idempotent.
  void stop();

 private:
  void work();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace fastserve
