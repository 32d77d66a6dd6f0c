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
    wake = queue_locked(std::move(job));
  }
  if (wake) wake_.notify_one();
  return true;
}

bool PythonRunner::queue_locked(std::unique_ptr<RunnerJob> job) {
  jobs_.push_back(std::move(job));
  // Engaged threads take it (or the watcher sees them stuck), and answering ones look at
  // the queue before they wait; else wake one. Also wake one to watch, should the engaged
  // ones have no watcher.
  return waiting_ > 0 && ((engaged_ == 0 && answering_ == 0) || (engaged_ > 0 && !watching_));
}

void PythonRunner::park(std::unique_ptr<RunnerJob> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++parked_;
  }
  RunnerJob& parked = *job;
  // The resume owns the job until it is called (stop() waits for that, so `this` outlives
  // it); queued again even while stopping.
  auto held = std::make_shared<std::unique_ptr<RunnerJob>>(std::move(job));
  parked.resume_when_ready([this, held] {
    if (!*held) return;  // called twice: a bug of the job's, but harmless here
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --parked_;
      wake = queue_locked(std::move(*held));
    }
    if (wake) wake_.notify_one();
  });
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

bool PythonRunner::wait_to_enter(std::unique_lock<std::mutex>& lock) {
  for (;;) {
    if (!jobs_.empty() && engaged_ == 0) return true;  // nobody inside to take them
    if (stopping_ && jobs_.empty() && parked_ == 0) {
      wake_.notify_all();  // a thread may have begun waiting after stop() woke them all
      return false;
    }
    if (engaged_ > 0 && !watching_) {
      // Watch the engaged threads: enter if, for a whole period, jobs were queued and none
      // was started.
      watching_ = true;
      const std::uint64_t seen = started_;
      const auto until = std::chrono::steady_clock::now() + options_.stuck_after;
      while (engaged_ > 0 && std::chrono::steady_clock::now() < until) {
        watch_.wait_until(lock, until);
      }
      watching_ = false;
      if (!jobs_.empty() && engaged_ > 0 && standby_ == 0 && started_ == seen) {
        if (waiting_ > 0) wake_.notify_one();  // the next watcher
        return true;
      }
      continue;
    }
    ++waiting_;
    wake_.wait(lock);
    --waiting_;
  }
}

void PythonRunner::work() {
  std::unique_ptr<Section> section = make_section_();
  const std::size_t most = options_.max_jobs_per_section < 1
                               ? 1
                               : static_cast<std::size_t>(options_.max_jobs_per_section);
  // Jobs this thread ran and answered: destroyed inside its next section (they may hold
  // Python objects).
  std::vector<std::unique_ptr<RunnerJob>> done;
  std::vector<std::unique_ptr<RunnerJob>> ran;
  ran.reserve(most);
  bool answered = false;  // this thread is counted in answering_
  for (;;) {
    bool work;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (answered) --answering_;
      answered = false;
      if (done.empty() && !wait_to_enter(lock)) return;
      work = !jobs_.empty();
      if (work) {
        ++engaged_;
        ++standby_;
      }
    }
    section->enter();
    done.clear();
    while (work && ran.size() < most) {
      std::unique_ptr<RunnerJob> job;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (jobs_.empty()) break;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        --standby_;
        ++started_;
      }
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
      --engaged_;
      ++answering_;
      answered = true;
    }
    for (auto& job : ran) {
      job->answer();
      if (job->waiting()) park(std::move(job));
    }
    done.swap(ran);
  }
}

}  // namespace fastserve
