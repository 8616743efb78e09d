// zk0::Tokenizer and SmolVLA's prompt tokenization against Python: tests/parity/tokenizer_reference.py
// trains small byte-level BPE tokenizers offline and writes the ids transformers and LeRobot give.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <stdexcept>
#include <thread>

#include "core/tokenizer/tokenizer.h"
#include "support/test_support.h"

using namespace zk0;
using nlohmann::json;

namespace {

class TokenizerParity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::make_temp_dir("tokenizer"));
    const std::string cmd = std::string(ZK0_PARITY_PYTHON) + " " + ZK0_SOURCE_DIR +
                            "/tests/parity/tokenizer_reference.py " + *dir_;
    int code = 0;
    const std::string out = test::run_command(cmd, &code);
    if (code != 0) {
      setup_error_ = new std::string("reference failed (" + std::to_string(code) + "): " + cmd + "\n" + out);
      return;
    }
    golden_ = new json(test::read_json(*dir_ + "/golden.json"));
  }
  static void TearDownTestSuite() {
    delete golden_;
    delete setup_error_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
    ASSERT_NE(golden_, nullptr);
    ASSERT_EQ((*golden_)["tokenizers"].size(), 2u);
  }
  static const json& golden() { return *golden_; }

  static std::string* dir_;
  static std::string* setup_error_;
  static json* golden_;
};
std::string* TokenizerParity::dir_ = nullptr;
std::string* TokenizerParity::setup_error_ = nullptr;
json* TokenizerParity::golden_ = nullptr;

std::vector<std::vector<int64_t>> rows(const std::vector<int64_t>& flat, int64_t batch, int64_t length) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t b = 0; b < batch; ++b) out.emplace_back(flat.begin() + b * length, flat.begin() + (b + 1) * length);
  return out;
}

std::vector<std::vector<int64_t>> rows(const std::vector<uint8_t>& flat, int64_t batch, int64_t length) {
  return rows(std::vector<int64_t>(flat.begin(), flat.end()), batch, length);
}

}  // namespace

// Without transformers' add_prefix_space override the ids are the tokenizers library's; with it,
// transformers'.
TEST_F(TokenizerParity, EncodeMatchesPython) {
  for (const json& t : golden()["tokenizers"]) {
    const Tokenizer as_json = Tokenizer::from_file(t["file"]);
    const Tokenizer as_transformers = Tokenizer::from_file(t["file"], t["transformers_add_prefix_space"].get<bool>());
    for (const json& e : t["encode"]) {
      const std::string text = e["text"];
      SCOPED_TRACE(t["name"].get<std::string>() + ": \"" + text + "\"");
      EXPECT_EQ(as_json.encode(text), e["ids"].get<std::vector<int64_t>>());
      EXPECT_EQ(as_json.encode(text, true), e["ids_special"].get<std::vector<int64_t>>());
      EXPECT_EQ(as_transformers.encode(text), e["transformers_ids"].get<std::vector<int64_t>>());
    }
  }
  // The second tokenizer must tell transformers' override from the json's value.
  bool differs = false;
  for (const json& e : golden()["tokenizers"][1]["encode"]) differs |= e["ids"] != e["transformers_ids"];
  EXPECT_TRUE(differs);
}

TEST_F(TokenizerParity, PromptsMatchLeRobot) {
  const int64_t max_length = golden()["max_length"];
  int cases = 0;
  for (const json& t : golden()["tokenizers"]) {
    const Tokenizer tok = Tokenizer::from_file(t["file"], t["transformers_add_prefix_space"].get<bool>());
    for (const json& p : t["prompts"]) {
      const auto expected_ids = p["input_ids"].get<std::vector<std::vector<int64_t>>>();
      const auto expected_mask = p["attention_mask"].get<std::vector<std::vector<int64_t>>>();
      SCOPED_TRACE(t["name"].get<std::string>() + " batch " + p["batch"].get<std::string>() + ", truncation " +
                   p["truncation_side"].get<std::string>() + ", padding " + p["padding"].get<std::string>());
      const TokenizedPrompts got =
          tokenize_prompts(tok, p["tasks"], max_length, p["padding"] == "max_length", p["truncation_side"] == "left",
                           t["pad_id"]);
      ASSERT_EQ(got.batch, static_cast<int64_t>(expected_ids.size()));
      ASSERT_EQ(got.length, static_cast<int64_t>(expected_ids.at(0).size()));
      ASSERT_EQ(got.ids.size(), got.attention_mask.size());
      EXPECT_EQ(rows(got.ids, got.batch, got.length), expected_ids);
      EXPECT_EQ(rows(got.attention_mask, got.batch, got.length), expected_mask);
      ++cases;
    }
  }
  EXPECT_EQ(cases, 16);

  // Guards the golden data itself: a reference that never truncates or pads would prove nothing.
  for (const json& t : golden()["tokenizers"]) {
    std::map<std::string, std::vector<std::vector<int64_t>>> by_side;
    bool padded = false, pads_to_longest = false;
    for (const json& p : t["prompts"]) {
      const auto mask = p["attention_mask"].get<std::vector<std::vector<int64_t>>>();
      for (const auto& row : mask) padded |= row.back() == 0;
      pads_to_longest |= static_cast<int64_t>(mask.at(0).size()) < max_length;
      if (p["batch"] == "all" && p["padding"] == "max_length")
        by_side[p["truncation_side"]] = p["input_ids"].get<std::vector<std::vector<int64_t>>>();
    }
    EXPECT_TRUE(padded);
    EXPECT_TRUE(pads_to_longest);
    ASSERT_EQ(by_side.size(), 2u);
    EXPECT_NE(by_side["left"], by_side["right"]) << "the long task must be truncated";
  }
}

namespace {

// Word-level, whitespace-split: ids are known without Python.
std::string word_tokenizer() {
  const std::string path = test::make_temp_dir("tokenizer-words") + "/tokenizer.json";
  std::ofstream(path) << R"({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
    "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
    "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "pick": 1, "up": 2, "the": 3, "cube": 4},
              "unk_token": "[UNK]"}})";
  return path;
}

}  // namespace

TEST(Tokenizer, TruncatesAndPads) {
  const Tokenizer tok = Tokenizer::from_file(word_tokenizer());
  EXPECT_EQ(tok.encode("pick up the red cube"), (std::vector<int64_t>{1, 2, 3, 0, 4}));
  EXPECT_EQ(tok.encode("pick up the cube", false, 2, true), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(tok.encode("pick up the cube", false, 2, false), (std::vector<int64_t>{1, 2}));
  const TokenizedPrompts p = tokenize_prompts(tok, {"pick up the cube", "up\n", ""}, 3, false, true, 9);
  EXPECT_EQ(p.batch, 3);
  EXPECT_EQ(p.length, 3);
  EXPECT_EQ(p.ids, (std::vector<int64_t>{2, 3, 4, 2, 9, 9, 9, 9, 9}));
  EXPECT_EQ(p.attention_mask, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 0, 0, 0}));
  const TokenizedPrompts q = tokenize_prompts(tok, {"up"}, 4, true, false, 9);
  EXPECT_EQ(q.ids, (std::vector<int64_t>{2, 9, 9, 9}));
  EXPECT_EQ(q.attention_mask, (std::vector<uint8_t>{1, 0, 0, 0}));
}

TEST(Tokenizer, EncodesFromSeveralThreads) {
  const Tokenizer tok = Tokenizer::from_file(word_tokenizer());
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int& m : mismatches)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) m += tok.encode("pick up the cube") != std::vector<int64_t>{1, 2, 3, 4};
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(Tokenizer, RejectsInvalidUtf8) {
  const Tokenizer tok = Tokenizer::from_file(word_tokenizer());
  EXPECT_THROW(tok.encode("caf\xc3"), std::runtime_error);
}

TEST(Tokenizer, MissingFileErrorNamesIt) {
  const std::string path = test::make_temp_dir("tokenizer-missing") + "/tokenizer.json";
  try {
    Tokenizer::from_file(path);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, MalformedJsonErrorNamesIt) {
  const std::string path = test::make_temp_dir("tokenizer-bad") + "/tokenizer.json";
  std::ofstream(path) << "{\"model\": 42}";
  try {
    Tokenizer::from_file(path);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}
