// The Python-servable runner without Python: a mutex stands in for the GIL. Built by
// tests/test_cpp_core.py under ThreadSanitizer and AddressSanitizer, which fail the run on
// any race or memory error (the jobs' counters are guarded by the stand-in GIL alone, so a
// job run outside its section is a race TSan reports).
#include "check.h"
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runners/python_runner.h"

using fastserve::PythonRunner;
using fastserve::PythonRunnerOptions;
using fastserve::RunnerJob;
using fastserve::Section;

using fastserve::testing::check;
using fastserve::testing::finish;

namespace {



// The stand-in GIL, and whether this thread holds it.
std::mutex gil;
thread_local bool inside = false;

// Guarded by `gil`.
int sections = 0;  // how many times a runner thread entered

class FakeGil final : public Section {
 public:
  void enter() override {
    gil.lock();
    inside = true;
    ++sections;
  }
  void leave() override {
    inside = false;
    gil.unlock();
  }
};

std::unique_ptr<Section> fake_gil() { return std::make_unique<FakeGil>(); }

PythonRunnerOptions options(int threads, int max_jobs_per_section) {
  PythonRunnerOptions o;
  o.threads = threads;
  o.max_jobs_per_section = max_jobs_per_section;
  return o;
}

// A one-shot signal.
class Latch {
 public:
  void open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

// What the jobs of one test saw. `ran` and `order` are guarded by `gil` (written in run());
// `answered` by its own mutex (written outside the section).
struct Record {
  std::vector<int> order;
  std::vector<int> section_of;  // by job id: the section count when it ran
  int ran = 0;
  std::mutex answered_mutex;
  int answered = 0;
  std::atomic<int> destroyed{0};
  std::atomic<int> misplaced{0};  // run outside, answered inside, destroyed outside
};

class Job final : public RunnerJob {
 public:
  Job(Record* record, int id, std::function<void()> during = {})
      : record_(record), id_(id), during_(std::move(during)) {}
  ~Job() override {
    if (ran_ && !inside) record_->misplaced.fetch_add(1);
    record_->destroyed.fetch_add(1);
  }
  void run() noexcept override {
    if (!inside) record_->misplaced.fetch_add(1);
    ran_ = true;
    if (during_) during_();
    ++record_->ran;  // guarded by the stand-in GIL only
    record_->order.push_back(id_);
    if (record_->section_of.size() <= static_cast<std::size_t>(id_)) {
      record_->section_of.resize(static_cast<std::size_t>(id_) + 1, -1);
    }
    record_->section_of[static_cast<std::size_t>(id_)] = sections;
  }
  void answer() noexcept override {
    if (inside || !ran_) record_->misplaced.fetch_add(1);
    std::lock_guard<std::mutex> lock(record_->answered_mutex);
    ++record_->answered;
  }

 private:
  Record* record_;
  const int id_;
  std::function<void()> during_;
  bool ran_ = false;
};

bool submit(PythonRunner& runner, Record& record, int id, std::function<void()> during = {}) {
  std::unique_ptr<RunnerJob> job = std::make_unique<Job>(&record, id, std::move(during));
  return runner.submit(job);
}

void many_producers_every_job_runs_once_inside_and_is_answered_outside() {
  Record record;
  constexpr int kProducers = 4;
  constexpr int kEach = 400;
  {
    PythonRunner runner(fake_gil, options(3, 16));
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        for (int i = 0; i < kEach; ++i) check(submit(runner, record, p * kEach + i), "submit");
      });
    }
    for (auto& producer : producers) producer.join();
    runner.stop();
  }
  std::lock_guard<std::mutex> lock(gil);
  check(record.ran == kProducers * kEach, "every job ran once");
  check(record.answered == kProducers * kEach, "every job was answered once");
  check(record.destroyed.load() == kProducers * kEach, "every job was destroyed");
  check(record.misplaced.load() == 0, "run and destroyed inside, answered outside");
}

void one_thread_runs_jobs_in_order_and_many_per_section() {
  Record record;
  Latch first_running, go;
  PythonRunner runner(fake_gil, options(1, 4));
  check(submit(runner, record, 0, [&] {
          first_running.open();
          go.wait();  // the rest are queued meanwhile
        }),
        "submit the first");
  first_running.wait();
  for (int id = 1; id <= 10; ++id) check(submit(runner, record, id), "submit the rest");
  go.open();
  runner.stop();
  std::lock_guard<std::mutex> lock(gil);
  check(record.order.size() == 11, "all ran");
  for (int id = 0; id < static_cast<int>(record.order.size()); ++id) {
    check(record.order[static_cast<std::size_t>(id)] == id, "in the order they came");
  }
  // Four per section at most: 0-3 in the first, 4-7 in the next, 8-10 in the one after.
  const int base = record.section_of[0];
  for (int id = 0; id <= 10; ++id) {
    check(record.section_of[static_cast<std::size_t>(id)] - base >= id / 4,
          "at most max_jobs_per_section per section");
  }
  check(record.section_of[3] == base, "queued jobs run in the section that found them");
  check(record.section_of[7] == record.section_of[4], "the next four in one section");
  check(record.misplaced.load() == 0, "run and destroyed inside, answered outside");
}

void a_job_waiting_without_the_gil_does_not_hold_up_the_next() {
  // The first job lets go of the stand-in GIL (as a sleeping servable releases the GIL) and
  // waits for the second to have run: with one thread only, or without a watcher that
  // enters when the one inside started nothing for a while, this would never end.
  Record record;
  Latch second_ran;
  PythonRunner runner(fake_gil, options(2, 64));
  check(submit(runner, record, 0, [&] {
          inside = false;
          gil.unlock();
          second_ran.wait();
          gil.lock();
          inside = true;
        }),
        "submit the waiting job");
  check(submit(runner, record, 1, [&] { second_ran.open(); }), "submit the second");
  runner.stop();
  std::lock_guard<std::mutex> lock(gil);
  check(record.ran == 2, "both ran");
  check(record.order.size() == 2 && record.order[0] == 1, "the second finished first");
  check(record.misplaced.load() == 0, "run and destroyed inside, answered outside");
}

void stop_runs_what_is_queued_and_refuses_the_rest() {
  Record record;
  Latch first_running, go;
  auto runner = std::make_unique<PythonRunner>(fake_gil, options(2, 8));
  check(submit(*runner, record, 0, [&] {
          first_running.open();
          go.wait();
        }),
        "submit the first");
  first_running.wait();
  for (int id = 1; id <= 50; ++id) check(submit(*runner, record, id), "submit");
  std::thread stopper([&] { runner->stop(); });
  // stop() may or may not have begun: either way every job queued before it runs.
  go.open();
  stopper.join();
  std::unique_ptr<RunnerJob> late = std::make_unique<Job>(&record, 99);
  check(!runner->submit(late), "a stopped runner refuses jobs");
  check(late != nullptr, "a refused job stays with its caller");
  late.reset();
  runner->stop();  // idempotent
  runner.reset();
  std::lock_guard<std::mutex> lock(gil);
  check(record.ran == 51, "every queued job ran");
  std::lock_guard<std::mutex> answered(record.answered_mutex);
  check(record.answered == 51, "every queued job was answered");
  check(record.destroyed.load() == 52, "every job was destroyed, the refused one too");
  check(record.misplaced.load() == 0, "run and destroyed inside, answered outside");
}

void many_waiting_jobs_each_get_a_thread() {
  // Four jobs that each let go of the stand-in GIL and wait until all four are inside: the
  // watchers must bring in a thread for each.
  Record record;
  std::mutex mutex;
  std::condition_variable all_in;
  int in = 0;
  PythonRunner runner(fake_gil, options(4, 64));
  for (int id = 0; id < 4; ++id) {
    check(submit(runner, record, id, [&] {
            inside = false;
            gil.unlock();
            {
              std::unique_lock<std::mutex> lock(mutex);
              ++in;
              all_in.notify_all();
              all_in.wait(lock, [&] { return in == 4; });
            }
            gil.lock();
            inside = true;
          }),
          "submit a waiting job");
  }
  runner.stop();
  std::lock_guard<std::mutex> lock(gil);
  check(record.ran == 4, "all four ran at once");
  check(record.misplaced.load() == 0, "run and destroyed inside, answered outside");
}

// Resumes handed over by waiting jobs, called by the test when it wants.
struct Parking {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::function<void()>> resumes;
};

// A job that runs twice: its first run leaves it waiting (as a batched request waits for its
// batch), and it is answered for good after its second. `at_once` jobs call their resume
// straight away, as when the batch already ran.
class TwoStepJob final : public RunnerJob {
 public:
  TwoStepJob(Record* record, Parking* parking, bool at_once)
      : record_(record), parking_(parking), at_once_(at_once) {}
  ~TwoStepJob() override {
    if (!inside || runs_ != 2) record_->misplaced.fetch_add(1);
    record_->destroyed.fetch_add(1);
  }
  void run() noexcept override {
    if (!inside) record_->misplaced.fetch_add(1);
    ++runs_;
    ++record_->ran;  // guarded by the stand-in GIL only
    waiting_ = runs_ == 1;
  }
  void answer() noexcept override {
    if (inside) record_->misplaced.fetch_add(1);
    if (runs_ != 2) return;  // not yet finished: nothing to answer
    std::lock_guard<std::mutex> lock(record_->answered_mutex);
    ++record_->answered;
  }
  bool waiting() const noexcept override { return waiting_; }
  void resume_when_ready(std::function<void()> resume) noexcept override {
    if (inside || runs_ != 1) record_->misplaced.fetch_add(1);
    if (at_once_) {
      resume();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(parking_->mutex);
      parking_->resumes.push_back(std::move(resume));
    }
    parking_->changed.notify_all();
  }

 private:
  Record* record_;
  Parking* parking_;
  const bool at_once_;
  int runs_ = 0;
  bool waiting_ = false;
};

void waiting_jobs_run_again_when_resumed_and_stop_waits_for_them() {
  Record record;
  Parking parking;
  constexpr int kJobs = 40;  // every fourth resumed at once, the rest later by the test
  constexpr int kLater = kJobs - kJobs / 4;
  std::atomic<bool> stopped{false};
  {
    PythonRunner runner(fake_gil, options(2, 8));
    for (int id = 0; id < kJobs; ++id) {
      std::unique_ptr<RunnerJob> job = std::make_unique<TwoStepJob>(&record, &parking, id % 4 == 0);
      check(runner.submit(job), "submit a two-step job");
    }
    {
      std::unique_lock<std::mutex> lock(parking.mutex);
      parking.changed.wait(lock, [&] { return parking.resumes.size() == static_cast<std::size_t>(kLater); });
    }
    std::thread stopper([&] {
      runner.stop();
      stopped = true;
    });
    // stop() refuses new jobs at once but cannot return while jobs wait: resumed from
    // another thread (as a batch thread would), each runs again and is answered.
    std::unique_ptr<RunnerJob> late = std::make_unique<Job>(&record, 99);
    while (runner.submit(late)) late = std::make_unique<Job>(&record, 99);  // until stopping
    check(!stopped.load(), "stop() waits for the waiting jobs");
    std::vector<std::function<void()>> resumes;
    {
      std::lock_guard<std::mutex> lock(parking.mutex);
      resumes.swap(parking.resumes);
    }
    std::thread resumer([&] {
      for (auto& resume : resumes) resume();
    });
    resumer.join();
    stopper.join();
    late.reset();
    resumes.clear();
  }
  std::lock_guard<std::mutex> lock(gil);
  // The jobs submitted until stop() refused one are plain one-run jobs: count them out.
  const int plain = record.destroyed.load() - kJobs - 1;
  check(record.ran == 2 * kJobs + plain, "every two-step job ran twice");
  std::lock_guard<std::mutex> answered(record.answered_mutex);
  check(record.answered == kJobs + plain, "every job was answered once, after its last run");
  check(record.misplaced.load() == 0, "run and destroyed inside, answered outside");
}

void an_idle_runner_stops_at_once() {
  PythonRunner runner(fake_gil, options(4, 8));
  runner.stop();
  Record record;
  check(!submit(runner, record, 0), "refused after stop");
}

}  // namespace

int main() {
  many_producers_every_job_runs_once_inside_and_is_answered_outside();
  one_thread_runs_jobs_in_order_and_many_per_section();
  a_job_waiting_without_the_gil_does_not_hold_up_the_next();
  stop_runs_what_is_queued_and_refuses_the_rest();
  many_waiting_jobs_each_get_a_thread();
  waiting_jobs_run_again_when_resumed_and_stop_waits_for_them();
  an_idle_runner_stops_at_once();
  return finish("all python runner checks passed");
}
