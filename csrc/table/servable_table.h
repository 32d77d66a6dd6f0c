// The servable table: model name -> version -> servable, plus version labels.
//
// Threads and the GIL: never touches Python itself; every function may be called from any
// thread, with or without the GIL, subject to these rules:
// - Lookups (acquire_*, models, versions, labels) take no lock and never wait: fine with the
//   GIL held.
// - Writers (add, remove, set_labels) take the table's write mutex and wait for a grace period;
//   wait_until_released() blocks; handle_count() takes the write mutex. Call them without the
//   GIL (the bindings release it).
// - A Payload's deleter runs on whichever thread drops the last reference to it (a writer, or
//   the last handle's release) and may need the GIL: the table drops payloads only with no lock
//   of its own held, and callers must not hold a lock such a deleter needs.
// - Releasing a handle takes no lock, except the last handle on a removed version, which takes
//   that version's mutex to wake wait_until_released(); ServableHandle::release_deferring_wake()
//   lets a caller holding the GIL do that part without it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "table/snapshot.h"

namespace fastserve {

// The servable itself, opaque to the table. Its deleter decides how it is
// freed (the Python binding's deleter takes the GIL), so the table stays free
// of any language runtime.
using Payload = std::shared_ptr<void>;

// One served version. Shared by the table's snapshots and by handles.
class VersionEntry {
 public:
  VersionEntry(std::string model, std::int64_t version, Payload payload)
      : model_(std::move(model)), version_(version), payload_(std::move(payload)) {}

  const std::string& model() const { return model_; }
  std::int64_t version() const { return version_; }
  void* payload() const { return payload_.get(); }
  std::int64_t handle_count() const { return handles_.load(); }

  // Wakes wait_until_released(); see ServableHandle::release_deferring_wake(). Takes the
  // entry's mutex (briefly; nothing waits while holding it).
  void wake_waiters();

 private:
  friend class ServableHandle;
  friend class ServableTable;

  void acquire() { handles_.fetch_add(1, std::memory_order_seq_cst); }
  // Drops one hold; true when it was the last on a retired entry, whose waiters must be woken.
  // Lock-free.
  bool drop();
  // Marks the entry as taken out of the table; releases from now on notify.
  void retire() { retired_.store(true, std::memory_order_seq_cst); }
  // Blocks until no handle remains or the deadline passes.
  bool wait_until_released(std::optional<std::chrono::steady_clock::time_point> deadline);

  const std::string model_;
  const std::int64_t version_;
  const Payload payload_;
  std::atomic<std::int64_t> handles_{0};
  std::atomic<bool> retired_{false};
  std::mutex mutex_;
  std::condition_variable released_;
};

// Keeps one version alive: while any handle to a version exists, the table's
// wait_until_released() for that version does not return. Move-only. A
// default-constructed (or released) handle is empty.
class ServableHandle {
 public:
  ServableHandle() = default;
  ServableHandle(const ServableHandle&) = delete;
  ServableHandle& operator=(const ServableHandle&) = delete;
  ServableHandle(ServableHandle&& other) noexcept = default;
  ServableHandle& operator=(ServableHandle&& other) noexcept;
  ~ServableHandle() { release(); }

  explicit operator bool() const { return entry_ != nullptr; }
  const std::string& model() const { return entry_->model(); }
  std::int64_t version() const { return entry_->version(); }
  void* payload() const { return entry_->payload(); }
  // Drops the hold on the version; idempotent. Lock-free, except when this is the last hold
  // on a removed version: then it takes the version's mutex to wake wait_until_released().
  void release();
  // release() for a caller that holds a lock it must not hold while taking the version's
  // mutex (the GIL): never takes a lock. When this was the last hold on a removed version it
  // returns that version, and the caller must call wake_waiters() on it once it has dropped
  // its lock (a waiter sleeps until then); otherwise it returns null. Idempotent.
  std::shared_ptr<VersionEntry> release_deferring_wake();

 private:
  friend class ServableTable;
  explicit ServableHandle(std::shared_ptr<VersionEntry> entry);
  std::shared_ptr<VersionEntry> entry_;
};

// Why a lookup found nothing.
enum class LookupStatus : int {
  kOk = 0,
  kModelNotFound = 1,    // no version of the model is in the table
  kVersionNotFound = 2,  // the model is there, the asked (or labelled) version is not
  kLabelNotFound = 3,    // the model has no such label
};

struct Lookup {
  ServableHandle handle;
  LookupStatus status = LookupStatus::kModelNotFound;
  // The version asked for, or the one the label names; -1 when neither applies.
  std::int64_t version = -1;
};

// Model name -> version -> servable, plus labels.
//
// Readers (acquire_*, and the introspection calls) never take a lock: they pin
// an immutable snapshot, look up, and take a handle. Writers (add, remove,
// set_labels) copy the affected model's entry, publish a new snapshot and wait
// for a grace period; they are serialised among themselves by a mutex.
//
// Lifecycle of a version: add() makes it visible; remove() makes it invisible,
// and once remove() returns no new handle to it can be acquired;
// wait_until_released() then blocks until every existing handle is gone, after
// which the caller may unload the servable.
class ServableTable {
 public:
  ServableTable();
  ServableTable(const ServableTable&) = delete;
  ServableTable& operator=(const ServableTable&) = delete;
  ~ServableTable();

  // Returns false (and changes nothing) if the version is already present.
  bool add(const std::string& model, std::int64_t version, Payload payload);
  // Returns false if the version was not present.
  bool remove(const std::string& model, std::int64_t version);
  // Blocks until no handle to a removed version remains. timeout_seconds < 0
  // waits forever. Returns true when released (or never present), false on
  // timeout. A version removed several times (re-added in between) waits for
  // all of its removed entries.
  bool wait_until_released(const std::string& model, std::int64_t version,
                           double timeout_seconds);
  // Replaces the model's labels. Labels may name versions not (yet) present;
  // lookups through such a label fail with kVersionNotFound.
  void set_labels(const std::string& model,
                  const std::map<std::string, std::int64_t>& labels);

  Lookup acquire_latest(const std::string& model) const;
  Lookup acquire_version(const std::string& model, std::int64_t version) const;
  Lookup acquire_label(const std::string& model, const std::string& label) const;

  std::vector<std::string> models() const;
  std::vector<std::int64_t> versions(const std::string& model) const;
  std::map<std::string, std::int64_t> labels(const std::string& model) const;
  // Handles held on a version, whether present or removed but not yet released.
  std::int64_t handle_count(const std::string& model, std::int64_t version) const;

 private:
  struct ModelEntry {
    std::map<std::int64_t, std::shared_ptr<VersionEntry>> versions;
    std::map<std::string, std::int64_t> labels;
  };
  using Models = std::unordered_map<std::string, std::shared_ptr<const ModelEntry>>;

  // Takes a handle on `version` of `entry` into `result`, or marks it not found.
  static void take(const ModelEntry& entry, std::int64_t version, Lookup& result);

  // Publishes `models` (the writer's edited copy) and returns the old snapshot,
  // which the caller frees after dropping write_mutex_: freeing it may free a
  // payload, and a payload's deleter may need a runtime lock (the GIL).
  // Caller holds write_mutex_.
  std::unique_ptr<const Models> publish(Models models);

  SnapshotCell<Models> snapshot_;
  mutable std::mutex write_mutex_;
  // Removed entries not yet waited for; guarded by write_mutex_.
  std::vector<std::shared_ptr<VersionEntry>> retired_;
};

}  // namespace fastserve
