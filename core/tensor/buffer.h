#pragma once
// An owned, 64-byte aligned byte buffer that is not zero-filled on allocation: parameter sets
// reach hundreds of megabytes and are always overwritten right after they are allocated.
#include <cstddef>
#include <cstdint>
#include <memory>

namespace zk0 {

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t size);
  Buffer(const Buffer& other);
  Buffer& operator=(const Buffer& other);
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
};

}  // namespace zk0
