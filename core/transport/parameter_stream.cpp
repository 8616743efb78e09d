#include "core/transport/parameter_stream.h"

#include <algorithm>
#include <cstring>

namespace zk0 {

const char* TransferError::reason() const {
  switch (kind_) {
    case Kind::BadManifest: return "bad_manifest";
    case Kind::LayoutMismatch: return "layout_mismatch";
    case Kind::ChunkChecksum: return "chunk_checksum";
    case Kind::TensorHash: return "tensor_hash";
    case Kind::Incomplete: return "incomplete";
    case Kind::OutOfOrder: return "out_of_order";
  }
  return "unknown";
}

namespace {
v1::DType to_proto(DType d) {
  switch (d) {
    case DType::F32: return v1::DTYPE_F32;
    case DType::BF16: return v1::DTYPE_BF16;
    case DType::F16: return v1::DTYPE_F16;
    case DType::F64: return v1::DTYPE_F64;
    case DType::I64: return v1::DTYPE_I64;
    case DType::BOOL: return v1::DTYPE_BOOL;
    case DType::U8: return v1::DTYPE_U8;
  }
  return v1::DTYPE_UNSPECIFIED;
}

DType from_proto(v1::DType d, const std::string& tensor) {
  switch (d) {
    case v1::DTYPE_F32: return DType::F32;
    case v1::DTYPE_BF16: return DType::BF16;
    case v1::DTYPE_F16: return DType::F16;
    case v1::DTYPE_F64: return DType::F64;
    case v1::DTYPE_I64: return DType::I64;
    case v1::DTYPE_BOOL: return DType::BOOL;
    case v1::DTYPE_U8: return DType::U8;
    default: break;
  }
  throw TransferError(TransferError::Kind::BadManifest, "manifest: tensor '" + tensor + "' has no valid dtype");
}
}  // namespace

void manifest_to_proto(const Manifest& manifest, v1::Manifest* out) {
  out->Clear();
  for (const auto& t : manifest.tensors) {
    auto* e = out->add_tensors();
    e->set_name(t.name);
    e->set_dtype(to_proto(t.dtype));
    for (int64_t d : t.shape) e->add_shape(d);
    e->set_byte_length(t.byte_length);
    e->set_sha256(t.sha256.data(), t.sha256.size());
  }
  out->set_digest(manifest.digest.data(), manifest.digest.size());
  if (manifest.encoding) {
    out->set_codec(manifest.encoding->codec);
    out->set_decoded_digest(manifest.encoding->decoded_digest.data(), manifest.encoding->decoded_digest.size());
  }
}

Manifest manifest_from_proto(const v1::Manifest& proto) {
  Manifest m;
  for (const auto& e : proto.tensors()) {
    TensorEntry t;
    t.name = e.name();
    t.dtype = from_proto(e.dtype(), e.name());
    t.shape.assign(e.shape().begin(), e.shape().end());
    t.byte_length = e.byte_length();
    if (e.sha256().size() != 32)
      throw TransferError(TransferError::Kind::BadManifest, "manifest: tensor '" + e.name() + "' has no SHA-256");
    std::memcpy(t.sha256.data(), e.sha256().data(), 32);
    m.tensors.push_back(std::move(t));
  }
  if (proto.digest().size() != 32) throw TransferError(TransferError::Kind::BadManifest, "manifest: digest missing");
  std::memcpy(m.digest.data(), proto.digest().data(), 32);
  if (!proto.codec().empty() || !proto.decoded_digest().empty()) {
    if (proto.codec().empty() || proto.decoded_digest().size() != 32)
      throw TransferError(TransferError::Kind::BadManifest, "manifest: an encoding needs both its codec and the decoded digest");
    ManifestEncoding e;
    e.codec = proto.codec();
    std::memcpy(e.decoded_digest.data(), proto.decoded_digest().data(), 32);
    m.encoding = std::move(e);
  }
  return m;
}

StreamPosition position_from_proto(const v1::ResumePoint& proto) { return {proto.tensor_index(), proto.offset()}; }

uint64_t bytes_before(const Manifest& manifest, StreamPosition position) {
  uint64_t bytes = position.offset;
  for (size_t i = 0; i < position.tensor && i < manifest.tensors.size(); ++i) bytes += manifest.tensors[i].byte_length;
  return bytes;
}

void position_to_proto(const StreamPosition& position, v1::ResumePoint* out) {
  out->set_tensor_index(static_cast<uint32_t>(position.tensor));
  out->set_offset(position.offset);
}

std::vector<uint32_t> chunk_checksums(const ParameterSet& parameters, uint64_t chunk_bytes) {
  std::vector<uint32_t> out;
  for (const auto& t : parameters.tensors)
    for (uint64_t offset = 0; offset < t.bytes.size(); offset += chunk_bytes)
      out.push_back(crc32c(t.bytes.data() + offset, std::min<uint64_t>(chunk_bytes, t.bytes.size() - offset)));
  return out;
}

namespace {
// Fills `chunk` with n bytes of tensor i from offset. With a precomputed checksum the bytes are
// only copied; without, they are checked while copied into the message, one pass instead of two.
// The chunk's buffer is handed back after each send (send_parameter_messages), so resizing it
// costs nothing.
void fill_chunk(v1::Chunk& chunk, size_t i, const Tensor& t, uint64_t offset, uint64_t n,
                std::optional<uint32_t> checksum) {
  const uint8_t* p = t.bytes.data() + offset;
  chunk.set_tensor_index(static_cast<uint32_t>(i));
  chunk.set_offset(offset);
  std::string& data = *chunk.mutable_data();
  data.resize(n);
  if (checksum) {
    std::memcpy(data.data(), p, n);
    chunk.set_crc32c(*checksum);
  } else {
    chunk.set_crc32c(crc32c_copy(data.data(), p, n));
  }
}
}  // namespace

bool send_parameters(const Manifest& manifest, const ParameterSet& parameters, uint64_t chunk_bytes,
                     const std::function<bool(const v1::Manifest&)>& send_manifest,
                     const std::function<bool(v1::Chunk&)>& send_chunk, const std::vector<uint32_t>* checksums,
                     StreamPosition from) {
  const size_t count = parameters.tensors.size();
  if (from.tensor > count || (from.tensor == count && from.offset != 0) ||
      (from.tensor < count && from.offset > parameters.tensors[from.tensor].bytes.size()))
    throw std::out_of_range("resume point tensor " + std::to_string(from.tensor) + " offset " + std::to_string(from.offset) +
                            " lies beyond the " + std::to_string(count) + " tensors");
  v1::Manifest proto;
  manifest_to_proto(manifest, &proto);
  if (!send_manifest(proto)) return false;
  v1::Chunk chunk;
  size_t chunk_index = 0;  // into `checksums`, which are cut from each tensor's first byte
  for (size_t i = 0; i < count; ++i) {
    const Tensor& t = parameters.tensors[i];
    const size_t chunks = (t.bytes.size() + chunk_bytes - 1) / chunk_bytes;
    if (i < from.tensor) {
      chunk_index += chunks;
      continue;
    }
    uint64_t offset = i == from.tensor ? from.offset : 0;
    // A resume point inside a chunk (the receiver used another chunk size) gets one short chunk
    // up to the next boundary, checked on its own; from there the cuts, and their checksums, are
    // the usual ones.
    if (offset % chunk_bytes != 0) {
      const uint64_t n = std::min<uint64_t>(chunk_bytes - offset % chunk_bytes, t.bytes.size() - offset);
      fill_chunk(chunk, i, t, offset, n, std::nullopt);
      if (!send_chunk(chunk)) return false;
      offset += n;
    }
    for (; offset < t.bytes.size(); offset += chunk_bytes) {
      const uint64_t n = std::min<uint64_t>(chunk_bytes, t.bytes.size() - offset);
      fill_chunk(chunk, i, t, offset, n,
                 checksums ? std::optional<uint32_t>(checksums->at(chunk_index + offset / chunk_bytes)) : std::nullopt);
      if (!send_chunk(chunk)) return false;
    }
    chunk_index += chunks;
  }
  return true;
}

ParameterReceiver::ParameterReceiver(std::optional<Manifest> expected_layout, int hash_threads, CodecSettings codec, Plain plain)
    : expected_(std::move(expected_layout)), codec_(std::move(codec)), plain_(plain), hash_threads_(std::max(1, hash_threads)) {}

ParameterReceiver::~ParameterReceiver() { stop_workers(); }

void ParameterReceiver::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void ParameterReceiver::hash_worker() {
  for (;;) {
    size_t index;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      index = queue_.front();
      queue_.pop_front();
    }
    const Tensor& t = parameters_.tensors[index];
    const bool ok = sha256(t.bytes.data(), t.bytes.size()) == manifest_.tensors[index].sha256;
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok && hash_error_.empty())
      hash_error_ = "tensor '" + t.name + "': SHA-256 of the received bytes does not match the manifest";
    --pending_;
    work_done_.notify_all();
  }
}

void ParameterReceiver::verify_async(size_t index) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(index);
    ++pending_;
  }
  if (workers_.size() < static_cast<size_t>(hash_threads_)) workers_.emplace_back([this] { hash_worker(); });
  work_ready_.notify_one();
}

bool ParameterReceiver::resumable() {
  std::lock_guard<std::mutex> lock(mu_);
  return has_manifest_ && hash_error_.empty();
}

void ParameterReceiver::expect_continuation() {
  if (!has_manifest_) throw std::logic_error("expect_continuation: nothing to continue");
  continuation_ = true;
}

void ParameterReceiver::on_manifest(const v1::Manifest& proto) {
  if (continuation_) {
    const Manifest repeated = manifest_from_proto(proto);
    if (repeated.digest != manifest_.digest)
      throw TransferError(TransferError::Kind::BadManifest, "the resumed stream's manifest " + repeated.digest_hex() +
                                                                " is not the interrupted one's " + manifest_.digest_hex());
    continuation_ = false;
    return;
  }
  if (has_manifest_) throw TransferError(TransferError::Kind::OutOfOrder, "a second manifest arrived");
  manifest_ = manifest_from_proto(proto);
  try {
    check_manifest_consistent(manifest_);
  } catch (const std::exception& e) {
    throw TransferError(TransferError::Kind::BadManifest, e.what());
  }
  if (expected_) {
    try {
      if (codec_.active() && (manifest_.encoding || plain_ == Plain::Refused)) {
        check_encoded_layout(*expected_, codec_, manifest_);
      } else {
        if (manifest_.encoding) throw std::runtime_error("an update encoded as '" + manifest_.encoding->codec + "' where plain tensors were expected");
        check_same_layout(*expected_, manifest_);
      }
    } catch (const std::exception& e) {
      throw TransferError(TransferError::Kind::LayoutMismatch, std::string("manifest: ") + e.what());
    }
  }
  has_manifest_ = true;
  // Allocated up front: background hashing reads tensors while later ones are being filled.
  for (const auto& e : manifest_.tensors) parameters_.tensors.push_back(make_tensor(e.name, e.dtype, e.shape));
  start_tensor();
}

void ParameterReceiver::start_tensor() {
  // Zero-byte tensors have no chunks: they are complete as soon as they are reached.
  offset_ = 0;
  while (tensor_ < manifest_.tensors.size() && manifest_.tensors[tensor_].byte_length == 0) verify_async(tensor_++);
}

void ParameterReceiver::on_chunk(const v1::Chunk& chunk) {
  if (!has_manifest_ || continuation_)
    throw TransferError(TransferError::Kind::OutOfOrder, "chunk before the manifest");
  if (tensor_ >= manifest_.tensors.size())
    throw TransferError(TransferError::Kind::OutOfOrder, "chunk after the last tensor was complete");
  const TensorEntry& e = manifest_.tensors[tensor_];
  if (chunk.tensor_index() != tensor_ || chunk.offset() != offset_)
    throw TransferError(TransferError::Kind::OutOfOrder,
                        "expected tensor " + std::to_string(tensor_) + " ('" + e.name + "') at offset " +
                            std::to_string(offset_) + ", got tensor " + std::to_string(chunk.tensor_index()) +
                            " at offset " + std::to_string(chunk.offset()));
  const std::string& data = chunk.data();
  if (data.empty() || offset_ + data.size() > e.byte_length)
    throw TransferError(TransferError::Kind::OutOfOrder,
                        "tensor '" + e.name + "': chunk of " + std::to_string(data.size()) + " bytes at offset " +
                            std::to_string(offset_) + " overruns its " + std::to_string(e.byte_length) + " bytes");
  // Copied while checked, in one pass: a chunk that fails leaves bytes past position(), which the
  // resumed stream overwrites.
  if (crc32c_copy(parameters_.tensors[tensor_].bytes.data() + offset_, data.data(), data.size()) != chunk.crc32c())
    throw TransferError(TransferError::Kind::ChunkChecksum,
                        "tensor '" + e.name + "': chunk at offset " + std::to_string(offset_) + " fails its CRC32C");
  offset_ += data.size();
  bytes_ += data.size();
  if (offset_ == e.byte_length) {
    verify_async(tensor_++);
    start_tensor();
  }
}

ParameterSet ParameterReceiver::finish() {
  if (!has_manifest_) throw TransferError(TransferError::Kind::Incomplete, "the stream ended before the manifest");
  if (tensor_ < manifest_.tensors.size())
    throw TransferError(TransferError::Kind::Incomplete, "the stream ended in tensor '" +
                                                             manifest_.tensors[tensor_].name + "' at byte " +
                                                             std::to_string(offset_));
  {
    std::unique_lock<std::mutex> lock(mu_);
    work_done_.wait(lock, [&] { return pending_ == 0; });
  }
  stop_workers();
  if (!hash_error_.empty()) throw TransferError(TransferError::Kind::TensorHash, hash_error_);
  return std::move(parameters_);
}

}  // namespace zk0
