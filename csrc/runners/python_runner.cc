#include "runners/python_runner.h"

#include <utility>

namespace fastserve {

PythonRunner::PythonRunner(std::function<std::unique_ptr<Section>()> make_section,
                           PythonRunnerOptions options)
    : make_section_(std::move(make_section)), options_(options) {
  const int threads = options_.threads < 1 ? 1 : options_.threads;
  threads_.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

PythonRunner::~PythonRunner() { stop(); }

bool PythonRunner::submit(std::unique_ptr<RunnerJob>& job) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return false;
    jobs_.push_back(std::move(job));
    // A runner that is free to take it will (it looks at the queue before it waits);
    // otherwise wake one, in case the busy ones are waiting inside their jobs.
    wake = standby_ == 0 && waiting_ > 0;
  }
  if (wake) wake_.notify_one();
  return true;
}

void PythonRunner::stop() {
  std::lock_guard<std::mutex> stopping(stop_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

void PythonRunner::work() {
  std::unique_ptr<Section> section = make_section_();
  const std::size_t most =
      options_.max_jobs_per_section < 1 ? 1 : static_cast<std::size_t>(options_.max_jobs_per_section);
  // Jobs this thread ran and answered: destroyed inside its next section (they may hold
  // Python objects).
  std::vector<std::unique_ptr<RunnerJob>> done;
  std::vector<std::unique_ptr<RunnerJob>> ran;
  ran.reserve(most);
  for (;;) {
    bool work;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (done.empty()) {
        ++waiting_;
        wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        --waiting_;
        if (jobs_.empty()) return;  // stopping, nothing queued, nothing left to destroy
      }
      work = !jobs_.empty();
      if (work) ++standby_;
    }
    section->enter();
    done.clear();
    while (work && ran.size() < most) {
      std::unique_ptr<RunnerJob> job;
      bool wake = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (jobs_.empty()) break;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        --standby_;
        // Should this job wait without the GIL (sleep, I/O), the rest need another thread.
        wake = !jobs_.empty() && standby_ == 0 && waiting_ > 0;
      }
      if (wake) wake_.notify_one();
      job->run();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++standby_;
      }
      ran.push_back(std::move(job));
    }
    section->leave();
    if (work) {
      std::lock_guard<std::mutex> lock(mutex_);
      --standby_;
    }
    for (auto& job : ran) job->answer();
    done.swap(ran);
  }
}

}  // namespace fastserve
