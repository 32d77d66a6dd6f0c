#include "table/servable_table.h"

#include <algorithm>

namespace fastserve {

bool VersionEntry::drop() {
  const std::int64_t left = handles_.fetch_sub(1, std::memory_order_seq_cst) - 1;
  // Only a retired entry has a waiter. seq_cst: the decrement and remove()'s retire() are
  // stores each followed by a load of the other's location (this load of retired_, the
  // waiter's load of handles_); at least one of the two sees the other's store.
  return left == 0 && retired_.load(std::memory_order_seq_cst);
}

void VersionEntry::wake_waiters() {
  // Taking the mutex before notifying closes the window between the waiter's check and its
  // sleep.
  std::lock_guard<std::mutex> lock(mutex_);
  released_.notify_all();
}

bool VersionEntry::wait_until_released(
    std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto released = [this] { return handles_.load(std::memory_order_seq_cst) == 0; };
  if (!deadline) {
    released_.wait(lock, released);
    return true;
  }
  return released_.wait_until(lock, *deadline, released);
}

ServableHandle::ServableHandle(std::shared_ptr<VersionEntry> entry)
    : entry_(std::move(entry)) {
  entry_->acquire();
}

ServableHandle& ServableHandle::operator=(ServableHandle&& other) noexcept {
  if (this != &other) {
    release();
    entry_ = std::move(other.entry_);
  }
  return *this;
}

void ServableHandle::release() {
  if (auto entry = release_deferring_wake()) entry->wake_waiters();
}

std::shared_ptr<VersionEntry> ServableHandle::release_deferring_wake() {
  std::shared_ptr<VersionEntry> entry = std::move(entry_);
  if (entry && entry->drop()) return entry;
  return nullptr;
}

ServableTable::ServableTable() : snapshot_(std::make_unique<const Models>()) {}

ServableTable::~ServableTable() = default;

std::unique_ptr<const ServableTable::Models> ServableTable::publish(Models models) {
  return snapshot_.publish(std::make_unique<const Models>(std::move(models)));
}

bool ServableTable::add(const std::string& model, std::int64_t version,
                        Payload payload) {
  std::unique_ptr<const Models> old;  // freed after the lock is dropped
  std::lock_guard<std::mutex> lock(write_mutex_);
  Models models = *snapshot_.read();
  auto edited = std::make_shared<ModelEntry>();
  if (auto it = models.find(model); it != models.end()) {
    if (it->second->versions.count(version) != 0) return false;
    *edited = *it->second;
  }
  edited->versions.emplace(
      version, std::make_shared<VersionEntry>(model, version, std::move(payload)));
  models[model] = std::move(edited);
  old = publish(std::move(models));
  return true;
}

bool ServableTable::remove(const std::string& model, std::int64_t version) {
  std::unique_ptr<const Models> old;  // freed after the lock is dropped
  std::lock_guard<std::mutex> lock(write_mutex_);
  Models models = *snapshot_.read();
  auto it = models.find(model);
  if (it == models.end()) return false;
  auto found = it->second->versions.find(version);
  if (found == it->second->versions.end()) return false;
  std::shared_ptr<VersionEntry> entry = found->second;
  entry->retire();
  retired_.push_back(entry);
  auto edited = std::make_shared<ModelEntry>(*it->second);
  edited->versions.erase(version);
  if (edited->versions.empty() && edited->labels.empty()) {
    models.erase(it);
  } else {
    it->second = std::move(edited);
  }
  // After the grace period no reader can still find the entry, so every handle
  // that will ever exist on it already does: waiting on the count is now sound.
  old = publish(std::move(models));
  return true;
}

bool ServableTable::wait_until_released(const std::string& model,
                                        std::int64_t version,
                                        double timeout_seconds) {
  std::vector<std::shared_ptr<VersionEntry>> waiting;
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    for (const auto& entry : retired_) {
      if (entry->model() == model && entry->version() == version) {
        waiting.push_back(entry);
      }
    }
  }
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout_seconds >= 0) {
    deadline = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(timeout_seconds));
  }
  for (const auto& entry : waiting) {
    if (!entry->wait_until_released(deadline)) return false;
  }
  std::lock_guard<std::mutex> lock(write_mutex_);
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [&](const std::shared_ptr<VersionEntry>& entry) {
                                  return std::find(waiting.begin(), waiting.end(),
                                                   entry) != waiting.end();
                                }),
                 retired_.end());
  return true;
}

void ServableTable::set_labels(const std::string& model,
                               const std::map<std::string, std::int64_t>& labels) {
  std::unique_ptr<const Models> old;  // freed after the lock is dropped
  std::lock_guard<std::mutex> lock(write_mutex_);
  Models models = *snapshot_.read();
  auto edited = std::make_shared<ModelEntry>();
  if (auto it = models.find(model); it != models.end()) *edited = *it->second;
  edited->labels = labels;
  if (edited->versions.empty() && edited->labels.empty()) {
    models.erase(model);
  } else {
    models[model] = std::move(edited);
  }
  old = publish(std::move(models));
}

void ServableTable::take(const ModelEntry& entry, std::int64_t version, Lookup& result) {
  auto found = entry.versions.find(version);
  if (found == entry.versions.end()) {
    result.status = LookupStatus::kVersionNotFound;
    return;
  }
  result.handle = ServableHandle(found->second);
  result.status = LookupStatus::kOk;
}

Lookup ServableTable::acquire_latest(const std::string& model) const {
  Lookup result;
  auto snapshot = snapshot_.read();
  auto it = snapshot->find(model);
  if (it == snapshot->end() || it->second->versions.empty()) return result;
  result.handle = ServableHandle(it->second->versions.rbegin()->second);
  result.status = LookupStatus::kOk;
  return result;
}

Lookup ServableTable::acquire_version(const std::string& model,
                                      std::int64_t version) const {
  Lookup result;
  result.version = version;
  auto snapshot = snapshot_.read();
  auto it = snapshot->find(model);
  if (it == snapshot->end() || it->second->versions.empty()) return result;
  take(*it->second, version, result);
  return result;
}

Lookup ServableTable::acquire_label(const std::string& model,
                                    const std::string& label) const {
  Lookup result;
  auto snapshot = snapshot_.read();
  auto it = snapshot->find(model);
  if (it == snapshot->end()) return result;
  auto labelled = it->second->labels.find(label);
  if (labelled == it->second->labels.end()) {
    result.status = LookupStatus::kLabelNotFound;
    return result;
  }
  result.version = labelled->second;
  take(*it->second, labelled->second, result);
  return result;
}

std::vector<std::string> ServableTable::models() const {
  std::vector<std::string> names;
  auto snapshot = snapshot_.read();
  for (const auto& [name, entry] : *snapshot) {
    if (!entry->versions.empty()) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::int64_t> ServableTable::versions(const std::string& model) const {
  std::vector<std::int64_t> result;
  auto snapshot = snapshot_.read();
  if (auto it = snapshot->find(model); it != snapshot->end()) {
    for (const auto& [version, entry] : it->second->versions) result.push_back(version);
  }
  return result;
}

std::map<std::string, std::int64_t> ServableTable::labels(const std::string& model) const {
  auto snapshot = snapshot_.read();
  if (auto it = snapshot->find(model); it != snapshot->end()) return it->second->labels;
  return {};
}

std::int64_t ServableTable::handle_count(const std::string& model,
                                         std::int64_t version) const {
  std::int64_t count = 0;
  {
    auto snapshot = snapshot_.read();
    if (auto it = snapshot->find(model); it != snapshot->end()) {
      if (auto found = it->second->versions.find(version);
          found != it->second->versions.end()) {
        count += found->second->handle_count();
      }
    }
  }
  std::lock_guard<std::mutex> lock(write_mutex_);
  for (const auto& entry : retired_) {
    if (entry->model() == model && entry->version() == version) {
      count += entry->handle_count();
    }
  }
  return count;
}

}  // namespace fastserve
