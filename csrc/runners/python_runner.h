// The Python-servable runner: requests that need Python are queued here by any thread, and a
// few runner threads run them. A runner thread enters Python once (takes the GIL) and runs
// every queued request, one after another, before it leaves; the answers (encode, send) are
// made after leaving. So under load the GIL changes hands once per round of requests, not
// once per request, and the threads that queue requests never wait for it.
//
// The runner knows nothing of Python: what "inside" means is a Section its owner gives (the
// bindings take and release the GIL), so it is tested with a plain mutex.
//
// Several runner threads keep the concurrency of servables that release the GIL while they
// wait (a sleep, I/O, a TensorFlow run), without making the threads take turns on the GIL
// when they do not: while runner threads are inside, one more thread watches them, and
// enters only when requests are queued and none was started for `stuck_after` (the ones
// inside are all waiting inside a request). Inside, it gets the GIL at once if the waiting
// request let go of it, or when Python's switch interval makes the holder let go.
//
// Threads:
// - submit() and stop() may be called from any thread, without the GIL (stop() waits for the
//   runner threads, which take it, and for every waiting job to be resumed and answered;
//   submit() never takes it). No lock of the runner is held
//   while a job runs, is answered or destroyed, or while a runner thread enters its section.
// - A Section is made, entered, left and destroyed on its own runner thread.
// - A RunnerJob's run() is called on a runner thread inside the section (with the GIL),
//   answer() on the same thread after leaving it (without the GIL), and a job that ran is
//   destroyed inside a later section (with the GIL), so it may hold Python objects from run()
//   until then. A job refused by submit(), or never run, is destroyed by whoever holds it,
//   outside any section: it must hold no Python object before run().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fastserve {

// What "inside" means for a runner thread: in production, holding the GIL. enter() and
// leave() alternate, starting with enter(); a section is left when it is destroyed.
class Section {
 public:
  virtual ~Section() = default;
  virtual void enter() = 0;
  virtual void leave() = 0;
};

// One queued request. No function may throw.
//
// A job may wait for something between two runs instead of blocking a runner thread (a
// batched request waiting for its batch): after answer(), a job that is waiting() is handed
// resume_when_ready() (outside the section, no lock of the runner held) and left alone; its
// `resume` must then be called exactly once, on any thread, with or without the GIL (it takes
// only the runner's mutex), and the job is queued again to run (and answer) once more.
class RunnerJob {
 public:
  virtual ~RunnerJob() = default;
  virtual void run() noexcept = 0;     // inside the section
  virtual void answer() noexcept = 0;  // after leaving it
  virtual bool waiting() const noexcept { return false; }
  virtual void resume_when_ready(std::function<void()> resume) noexcept { resume(); }
};

struct PythonRunnerOptions {
  int threads = 1;
  // The most jobs a runner thread runs before it leaves the section to answer them.
  int max_jobs_per_section = 64;
  // How long queued jobs wait, with no job started, before one more thread enters.
  std::chrono::microseconds stuck_after{5000};
};

class PythonRunner {
 public:
  // `make_section` is called once on each runner thread, as it starts.
  PythonRunner(std::function<std::unique_ptr<Section>()> make_section,
               PythonRunnerOptions options);
  ~PythonRunner();  // stop()s
  PythonRunner(const PythonRunner&) = delete;
  PythonRunner& operator=(const PythonRunner&) = delete;

  // Queues `job`; false once stopping (the job is left with the caller, not run).
  bool submit(std::unique_ptr<RunnerJob>& job);
  // Refuses new jobs, runs and answers every queued one and every waiting one once resumed,
  // then joins the runner threads.
  // Idempotent. Must not be called with the GIL held while jobs are queued.
  void stop();

 private:
  void work();

  const std::function<std::unique_ptr<Section>()> make_section_;
  const PythonRunnerOptions options_;
  // Whether this thread should enter now (with mutex_ held); waits for that or for the
  // end. False: stopping and nothing left to run.
  bool wait_to_enter(std::unique_lock<std::mutex>& lock);
  // Queues `job` (with mutex_ held); whether to wake a runner thread for it.
  bool queue_locked(std::unique_ptr<RunnerJob> job);
  // Hands a waiting job its resume, which queues it again.
  void park(std::unique_ptr<RunnerJob> job);

  std::mutex mutex_;
  std::condition_variable wake_;   // idle runner threads
  std::condition_variable watch_;  // the watching one waits on it for its period
  std::deque<std::unique_ptr<RunnerJob>> jobs_;
  bool stopping_ = false;
  int waiting_ = 0;          // runner threads waiting on wake_
  int engaged_ = 0;          // runner threads that decided to enter and have not yet left
  int standby_ = 0;          // engaged runner threads not running a job (free to take one)
  int answering_ = 0;        // runner threads answering, that look at the queue next
  bool watching_ = false;    // a runner thread watches the engaged ones
  int parked_ = 0;           // waiting jobs not yet resumed
  std::uint64_t started_ = 0;  // jobs taken so far
  std::vector<std::thread> threads_;
  std::mutex stop_mutex_;  // stop() against itself
};

}  // namespace fastserve
