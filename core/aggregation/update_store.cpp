#include "core/aggregation/update_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace zk0 {

namespace {

constexpr size_t kWriteChunk = size_t{1} << 20;  // floats per write: 4 MB

std::runtime_error io_error(const std::string& what, const std::string& path) {
  return std::runtime_error("update store: " + what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

UpdateStore::UpdateStore(const std::string& parent_dir, const ParameterSet& global) : global_(global) {
  std::filesystem::create_directories(parent_dir);
  std::string pattern = (std::filesystem::path(parent_dir) / "round-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw io_error("cannot create a folder in", parent_dir);
  dir_ = pattern;
  for (const auto& t : global.tensors) elements_ += t.numel();
}

UpdateStore::~UpdateStore() {
  for (int fd : fds_) ::close(fd);
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

size_t UpdateStore::put(const ParameterSet& update, double& norm) {
  const std::string path = dir_ + "/" + std::to_string(fds_.size()) + ".delta";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw io_error("cannot create", path);
  fds_.push_back(fd);  // closed by the destructor whatever happens below
  std::vector<float> chunk(kWriteChunk);
  double sum = 0;
  off_t offset = 0;
  for (size_t t = 0; t < global_.tensors.size(); ++t) {
    const float* x = update.tensors[t].as<float>();
    const float* g = global_.tensors[t].as<float>();
    const int64_t n = global_.tensors[t].numel();
    for (int64_t begin = 0; begin < n; begin += static_cast<int64_t>(kWriteChunk)) {
      const size_t count = static_cast<size_t>(std::min<int64_t>(n - begin, static_cast<int64_t>(kWriteChunk)));
      const float* xb = x + begin;
      const float* gb = g + begin;
      float* d = chunk.data();
      double chunk_sum = 0;
#pragma omp simd reduction(+ : chunk_sum)
      for (size_t k = 0; k < count; ++k) {
        d[k] = xb[k] - gb[k];
        chunk_sum += static_cast<double>(d[k]) * d[k];
      }
      sum += chunk_sum;
      const char* p = reinterpret_cast<const char*>(chunk.data());
      size_t left = count * sizeof(float);
      while (left > 0) {
        const ssize_t w = ::pwrite(fd, p, left, offset);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw io_error("cannot write", path);
        p += w;
        left -= static_cast<size_t>(w);
        offset += w;
      }
    }
  }
  norm = std::sqrt(sum);
  return fds_.size() - 1;
}

void UpdateStore::read(size_t row, int64_t begin, int64_t count, float* out) const {
  if (row >= fds_.size() || begin < 0 || count < 0 || begin + count > elements_)
    throw std::out_of_range("update store: row " + std::to_string(row) + " coordinates [" + std::to_string(begin) + ", " +
                            std::to_string(begin + count) + ") out of range");
  char* p = reinterpret_cast<char*>(out);
  size_t left = static_cast<size_t>(count) * sizeof(float);
  off_t offset = static_cast<off_t>(begin) * static_cast<off_t>(sizeof(float));
  while (left > 0) {
    const ssize_t r = ::pread(fds_[row], p, left, offset);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw io_error("cannot read", dir_ + "/" + std::to_string(row) + ".delta");
    p += r;
    left -= static_cast<size_t>(r);
    offset += r;
  }
}

}  // namespace zk0
