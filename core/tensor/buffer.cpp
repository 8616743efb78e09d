#include "core/tensor/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace zk0 {

void Buffer::Free::operator()(uint8_t* p) const { std::free(p); }

Buffer::Buffer(size_t size) : size_(size) {
  if (size == 0) return;
  const size_t rounded = (size + 63) / 64 * 64;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, rounded));
  if (!p) throw std::bad_alloc();
  data_.reset(p);
}

Buffer::Buffer(const Buffer& other) : Buffer(other.size_) {
  if (size_) std::memcpy(data(), other.data(), size_);
}

Buffer& Buffer::operator=(const Buffer& other) {
  if (this != &other) *this = Buffer(other);
  return *this;
}

}  // namespace zk0
