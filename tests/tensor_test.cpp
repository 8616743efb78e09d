// Hashing, manifests and safetensors files.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/tensor/manifest.h"
#include "core/tensor/safetensors.h"
#include "core/util/fs.h"
#include "support/test_support.h"

using namespace zk0;

namespace {

Tensor f32(const std::string& name, std::vector<int64_t> shape, std::vector<float> values) {
  Tensor t = make_tensor(name, DType::F32, std::move(shape));
  std::memcpy(t.bytes.data(), values.data(), values.size() * 4);
  return t;
}

ParameterSet two_tensors() {
  ParameterSet p;
  p.tensors.push_back(f32("layer.weight", {2, 2}, {1, 2, 3, 4}));
  p.tensors.push_back(f32("layer.bias", {2}, {0.5f, -0.5f}));
  return p;
}

}  // namespace

TEST(Hash, Sha256KnownVector) {
  EXPECT_EQ(to_hex(sha256("abc", 3)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;  // streaming in pieces gives the same digest
  h.update("a", 1);
  h.update("bc", 2);
  EXPECT_EQ(to_hex(h.finish()), to_hex(sha256("abc", 3)));
}

TEST(Hash, Crc32cCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C "check" value
  std::vector<uint8_t> big(1 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  const uint32_t whole = crc32c(big.data(), big.size());
  EXPECT_EQ(crc32c(big.data() + 1000, big.size() - 1000, crc32c(big.data(), 1000)), whole);  // chaining
  big[12345] ^= 1;
  EXPECT_NE(crc32c(big.data(), big.size()), whole);
  // The three-lane path (joined by GF(2) shifts) equals the bytewise definition on every length
  // around its lane sizes, and the copying form copies exactly.
  const auto bitwise = [](const uint8_t* p, size_t n) {
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; ++i) {
      c ^= p[i];
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
  };
  std::vector<uint8_t> copy(big.size());
  for (size_t n : {size_t{0}, size_t{7}, size_t{767}, size_t{768}, size_t{769}, size_t{3 * 8192 - 1}, size_t{3 * 8192},
                   size_t{3 * 8192 + 3 * 256 + 13}, size_t{2 * 3 * 8192 + 5}, big.size() - 3}) {
    const uint8_t* p = big.data() + 3;  // unaligned
    EXPECT_EQ(crc32c(p, n), bitwise(p, n)) << n;
    std::fill(copy.begin(), copy.end(), 0);
    EXPECT_EQ(crc32c_copy(copy.data() + 1, p, n), bitwise(p, n)) << n;
    EXPECT_TRUE(std::equal(p, p + n, copy.begin() + 1)) << n;
    EXPECT_EQ(copy[n + 1], 0) << n;
  }
}

TEST(Manifest, CanonicalEncodingAndDigest) {
  const Manifest m = build_manifest(two_tensors());
  const float w[] = {1, 2, 3, 4}, b[] = {0.5f, -0.5f};
  const std::string expected = "zk0-manifest-v1\n"
                               "layer.weight\tF32\t2,2\t16\t" + to_hex(sha256(w, sizeof w)) + "\n" +
                               "layer.bias\tF32\t2\t8\t" + to_hex(sha256(b, sizeof b)) + "\n";
  EXPECT_EQ(canonical_encoding(m.tensors), expected);
  EXPECT_EQ(m.digest_hex(), to_hex(sha256(expected.data(), expected.size())));
  EXPECT_EQ(m.total_bytes(), 24u);
  EXPECT_NO_THROW(check_manifest_consistent(m));
}

TEST(Manifest, NamesShapesAndOrderAreBoundIn) {
  const std::string base = build_manifest(two_tensors()).digest_hex();
  ParameterSet reshaped = two_tensors();
  reshaped.tensors[0].shape = {4, 1};
  EXPECT_NE(build_manifest(reshaped).digest_hex(), base);
  ParameterSet renamed = two_tensors();
  renamed.tensors[1].name = "layer.bias2";
  EXPECT_NE(build_manifest(renamed).digest_hex(), base);
  ParameterSet swapped = two_tensors();
  std::swap(swapped.tensors[0], swapped.tensors[1]);
  EXPECT_NE(build_manifest(swapped).digest_hex(), base);
  ParameterSet changed = two_tensors();
  changed.tensors[1].as<float>()[0] = 0.25f;
  EXPECT_NE(build_manifest(changed).digest_hex(), base);
}

TEST(Manifest, InconsistenciesAreNamed) {
  Manifest m = build_manifest(two_tensors());
  m.tensors[0].byte_length = 12;
  m.digest = manifest_digest(m.tensors);
  EXPECT_THROW(
      {
        try {
          check_manifest_consistent(m);
        } catch (const std::runtime_error& e) {
          EXPECT_NE(std::string(e.what()).find("layer.weight"), std::string::npos);
          throw;
        }
      },
      std::runtime_error);
  Manifest tampered = build_manifest(two_tensors());
  tampered.tensors[1].sha256[0] ^= 1;  // entries changed, digest not
  EXPECT_THROW(check_manifest_consistent(tampered), std::runtime_error);
  Manifest other = build_manifest(two_tensors());
  other.tensors[1].shape = {1, 2};
  EXPECT_THROW(check_same_layout(build_manifest(two_tensors()), other), std::runtime_error);
}

TEST(Safetensors, RoundTripKeepsNamesOrderDtypesAndBytes) {
  const std::string dir = test::make_temp_dir("st");
  ParameterSet p = two_tensors();
  Tensor half = make_tensor("half", DType::BF16, {3});
  for (int i = 0; i < 6; ++i) half.bytes.data()[i] = static_cast<uint8_t>(i + 1);
  p.tensors.push_back(std::move(half));
  std::map<std::string, std::string> meta{{"format", "pt"}};
  write_safetensors(dir + "/m.safetensors", p, meta);
  std::map<std::string, std::string> read_meta;
  const ParameterSet q = read_safetensors(dir + "/m.safetensors", &read_meta);
  EXPECT_EQ(read_meta, meta);
  EXPECT_EQ(build_manifest(q).digest_hex(), build_manifest(p).digest_hex());
}

TEST(Safetensors, TruncatedFileIsAnErrorNamingTheFile) {
  const std::string dir = test::make_temp_dir("st");
  write_safetensors(dir + "/m.safetensors", two_tensors());
  std::filesystem::resize_file(dir + "/m.safetensors", std::filesystem::file_size(dir + "/m.safetensors") - 4);
  try {
    read_safetensors(dir + "/m.safetensors");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("m.safetensors"), std::string::npos) << e.what();
  }
  std::ofstream(dir + "/garbage.safetensors") << "not a safetensors file at all";
  EXPECT_THROW(read_safetensors(dir + "/garbage.safetensors"), std::runtime_error);
}

// Found by fuzzing: a float in a header's offsets or shape was cast to an integer, undefined when out of range.
TEST(Safetensors, NonIntegerOffsetsAndShapesAreErrors) {
  const auto decode_header = [](const std::string& header) {
    std::string file(8, '\0');
    for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    file += header + std::string(16, '\0');
    try {
      decode_safetensors(file, "m.safetensors");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(decode_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})"), "");
  for (const std::string bad : {R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,1e300]}})",
                                R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[-1,16]}})",
                                R"({"w":{"dtype":"F32","shape":[4.5],"data_offsets":[0,16]}})",
                                R"({"w":{"dtype":"F32","shape":[-1e30],"data_offsets":[0,16]}})"}) {
    const std::string err = decode_header(bad);
    EXPECT_NE(err.find("m.safetensors"), std::string::npos) << bad << " -> " << err;
    EXPECT_NE(err.find("tensor 'w'"), std::string::npos) << bad << " -> " << err;
  }
}

// Shapes come from peers and files: a product that overflows 64 bits (and would then match a
// small byte length) or asks for terabytes is refused before anything is allocated.
TEST(TensorSizes, OverflowingAndHugeShapesAreRefused) {
  EXPECT_EQ(tensor_bytes(DType::F32, {2, 3}), 24u);
  EXPECT_EQ(tensor_bytes(DType::F32, {}), 4u);
  EXPECT_EQ(tensor_bytes(DType::F32, {0, int64_t{1} << 62}), 0u);
  EXPECT_THROW(tensor_bytes(DType::F32, {int64_t{1} << 32, int64_t{1} << 32}), std::invalid_argument);  // 2^66 wraps to 0
  EXPECT_THROW(tensor_bytes(DType::F32, {int64_t{1} << 40}), std::invalid_argument);
  EXPECT_THROW(tensor_bytes(DType::F32, {-1, 4}), std::invalid_argument);
  EXPECT_THROW(tensor_bytes(DType::F32, std::vector<int64_t>(9, 1)), std::invalid_argument);
  EXPECT_THROW(make_tensor("huge", DType::F64, {int64_t{1} << 31, int64_t{1} << 31}), std::invalid_argument);

  Manifest m = build_manifest(two_tensors());
  m.tensors[0].shape = {int64_t{1} << 32, int64_t{1} << 32, 4};  // 4 * 2^66: 0 mod 2^64
  m.tensors[0].byte_length = 0;
  m.digest = manifest_digest(m.tensors);
  try {
    check_manifest_consistent(m);
    FAIL() << "an overflowing shape passed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("layer.weight"), std::string::npos) << e.what();
  }

  const std::string dir = test::make_temp_dir("st-huge");
  const std::string header = R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  std::ofstream(dir + "/h.safetensors", std::ios::binary) << file << header;
  try {
    read_safetensors(dir + "/h.safetensors");
    FAIL() << "an overflowing safetensors shape passed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 't'"), std::string::npos) << e.what();
  }
}

// A port or status file named /dev/null must not turn the machine's /dev/null into a regular file
// (the rename of an atomic write would, as root): refused, the device left as it was.
TEST(Files, AnAtomicWriteRefusesToReplaceADeviceOrAPipe) {
  EXPECT_THROW(zk0::write_file_atomic("/dev/null", "1234\n"), std::runtime_error);
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  const std::string fifo = zk0::test::make_temp_dir("fifo") + "/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THROW(zk0::write_file_atomic(fifo, "x"), std::runtime_error);
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}
