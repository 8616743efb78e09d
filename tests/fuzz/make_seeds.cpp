// Writes the seed corpus (tests/fuzz/corpus/<target>/): small valid inputs for each target, from
// which the fuzzer mutates. Run once when a format changes:  build-fuzz/make_seeds tests/fuzz/corpus
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/codec/update_codec.h"
#include "core/policy/smolvla/cache_entry.h"
#include "core/tensor/manifest.h"
#include "core/tensor/safetensors.h"
#include "core/transport/parameter_stream.h"
#include "core/util/fs.h"
#include "templates.h"

#include <algorithm>

namespace fs = std::filesystem;
using namespace zk0;

namespace {

void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

ParameterSet tensors(std::initializer_list<std::pair<const char*, std::vector<int64_t>>> shapes, DType dtype = DType::F32) {
  ParameterSet p;
  float value = 0.25f;
  for (const auto& [name, shape] : shapes) {
    Tensor t = make_tensor(name, dtype, shape);
    for (size_t i = 0; i + 4 <= t.bytes.size(); i += 4) std::memcpy(t.bytes.data() + i, &(value += 0.5f), 4);
    p.tensors.push_back(std::move(t));
  }
  return p;
}

std::string framed(const v1::UploadMessage& msg) {
  const std::string body = msg.SerializeAsString();
  return std::string{static_cast<char>(body.size() & 0xff), static_cast<char>(body.size() >> 8)} + body;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path out = argc > 1 ? argv[1] : "corpus";
  for (const auto& e : fs::directory_iterator(fs::path(ZK0_FUZZ_TEMPLATES) / ".." / ".." / ".." / "examples"))
    if (e.path().extension() == ".yaml") put(out / "spec", e.path().filename().string(), read_file(e.path().string()));

  put(out / "safetensors", "two.safetensors", encode_safetensors(tensors({{"w", {2, 3}}, {"b", {3}}}), {{"format", "pt"}}));
  put(out / "safetensors", "empty.safetensors", encode_safetensors({}));

  ParameterSet entry = tensors({{"key.0", {3, 1, 2}}, {"value.0", {3, 1, 2}}});
  Tensor pad = make_tensor("pad_mask", DType::BOOL, {3});
  std::memset(pad.bytes.data(), 1, 3);
  entry.tensors.push_back(std::move(pad));
  put(out / "cache_entry", "entry.safetensors", smolvla::encode_cache_entry("k", entry));

  // The layout upload_stream.cpp expects, as a whole upload and as one cut short.
  ParameterSet update = tensors({{"expert.weight", {4, 3}}, {"expert.bias", {3}}});
  const Manifest manifest = build_manifest(update);
  std::string whole;
  v1::UploadMessage msg;
  manifest_to_proto(manifest, msg.mutable_manifest());
  whole += framed(msg);
  for (size_t i = 0; i < update.tensors.size(); ++i) {
    const Tensor& t = update.tensors[i];
    for (uint64_t offset = 0; offset < t.bytes.size(); offset += 24) {
      const uint64_t n = std::min<uint64_t>(24, t.bytes.size() - offset);
      v1::UploadMessage c;
      c.mutable_chunk()->set_tensor_index(static_cast<uint32_t>(i));
      c.mutable_chunk()->set_offset(offset);
      c.mutable_chunk()->set_data(t.bytes.data() + offset, n);
      c.mutable_chunk()->set_crc32c(crc32c(t.bytes.data() + offset, n));
      whole += framed(c);
    }
  }
  put(out / "upload_stream", "whole", whole);
  put(out / "upload_stream", "manifest-only", framed(msg));

  // update_codec.cpp's layout encoded by each of its codecs.
  const CodecSettings codecs[] = {{CodecKind::Bf16}, {CodecKind::Int8, 4}, {CodecKind::TopK, 0, 0.25}};
  for (uint8_t c = 0; c < 3; ++c) {
    std::string input(1, static_cast<char>(c));
    for (const Tensor& t : encode_update(update, codecs[c], 1).tensors)
      input += std::string{static_cast<char>(t.bytes.size() & 0xff), static_cast<char>(t.bytes.size() >> 8)} +
               std::string(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
    put(out / "update_codec", codec_name(codecs[c].kind), input);
  }

  const auto files = fuzz::template_files();
  for (size_t i = 0; i < files.size(); ++i) {
    const fs::path file = fs::path(ZK0_FUZZ_TEMPLATES) / files[i].dataset / files[i].path;
    const std::string bytes = read_file(file.string());
    std::string name = files[i].dataset + "-" + files[i].path;
    std::replace(name.begin(), name.end(), '/', '-');
    put(out / "lerobot_metadata", name, std::string(1, static_cast<char>(i)) + bytes);
    if (file.extension() == ".parquet") put(out / "lerobot_parquet", name, bytes);
  }
  return 0;
}
