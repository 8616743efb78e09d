#include "core/ledger/ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "core/security/certificate.h"
#include "core/tensor/hash.h"
#include "core/util/base64.h"
#include "core/util/fs.h"
#include "core/util/json_number.h"

namespace zk0 {

namespace fs = std::filesystem;

namespace {

void append_durably(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("ledger " + path + ": cannot open for appending: " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      throw std::runtime_error("ledger " + path + ": write failed: " + why);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const std::string why = synced ? "" : std::strerror(errno);
  ::close(fd);
  if (!synced) throw std::runtime_error("ledger " + path + ": fsync failed: " + why);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  if (!fs::exists(path)) return lines;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

std::string UpdateClaims::canonical() const {
  return nlohmann::json{{"run", run},
                        {"round", round},
                        {"client", client},
                        {"base_digest", base_digest},
                        {"update_digest", update_digest},
                        {"samples", samples},
                        {"steps", steps},
                        {"loss", loss},
                        {"policy_loss", policy_loss}}
      .dump();
}

UpdateClaims UpdateClaims::parse(const std::string& canonical) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(canonical);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("claims are not JSON: ") + e.what());
  }
  if (!j.is_object()) throw std::runtime_error("claims are not a JSON object");
  UpdateClaims c;
  try {
    c.run = j.at("run").get<std::string>();
    c.round = static_cast<int>(json_integer(j.at("round")));
    c.client = j.at("client").get<std::string>();
    c.base_digest = j.at("base_digest").get<std::string>();
    c.update_digest = j.at("update_digest").get<std::string>();
    c.samples = j.at("samples").get<uint64_t>();
    c.steps = j.at("steps").get<uint32_t>();
    c.loss = j.at("loss").get<double>();
    c.policy_loss = j.at("policy_loss").get<double>();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("claims: ") + e.what());
  }
  if (c.canonical() != canonical) throw std::runtime_error("claims are not in canonical form (or carry fields beyond the claims)");
  return c;
}

std::string claims_message(const std::string& canonical_claims) { return "zk0-update-claims-v1\n" + canonical_claims; }

std::string entry_message(const nlohmann::json& entry_without_signature) {
  return "zk0-ledger-entry-v1\n" + entry_without_signature.dump();
}

nlohmann::json certificate_identity(const std::string& certificate_pem) {
  const CertificateInfo info = parse_certificate(certificate_pem);
  return {{"kind", "certificate"}, {"certificate", certificate_pem}, {"fingerprint", info.fingerprint_sha256}, {"subject", info.subject}};
}

nlohmann::json key_identity(const std::string& public_key_pem, const std::string& why_no_certificate) {
  return {{"kind", "key"}, {"public_key", public_key_pem}, {"note", why_no_certificate}};
}

std::string identity_pem(const nlohmann::json& identity) {
  if (!identity.is_object() || !identity.contains("kind")) return "";
  const std::string field = identity["kind"] == "certificate" ? "certificate" : "public_key";
  return identity.contains(field) && identity[field].is_string() ? identity[field].get<std::string>() : "";
}

LedgerHead LedgerHead::from_json(const nlohmann::json& j) {
  LedgerHead h;
  h.entries = j.at("entries").get<uint64_t>();
  h.sha256 = j.at("head").get<std::string>();
  return h;
}

std::string line_hash(const std::string& line) { return to_hex(sha256(line.data(), line.size())); }

LedgerWriter::LedgerWriter(std::string output_dir, SigningKey key, nlohmann::json identity)
    : output_dir_(std::move(output_dir)), key_(std::move(key)), identity_(std::move(identity)) {}

std::string LedgerWriter::path() const { return (fs::path(output_dir_) / kLedgerFile).string(); }

void LedgerWriter::move_to_abandoned(const std::vector<std::string>& lines) {
  if (lines.empty()) return;
  std::string bytes;
  for (const auto& l : lines) bytes += l + "\n";
  append_durably((fs::path(output_dir_) / "ledger.abandoned.jsonl").string(), bytes);
}

void LedgerWriter::start(const std::string& run, const std::string& spec_fingerprint, const std::string& initial_global_digest,
                         int first_round) {
  fs::create_directories(output_dir_);
  move_to_abandoned(read_lines(path()));
  fs::remove(path());
  head_ = {};
  pending_.clear();
  append({{"kind", "genesis"},
          {"run", run},
          {"spec_fingerprint", spec_fingerprint},
          {"aggregator", identity_},
          {"initial_global_digest", initial_global_digest},
          {"first_round", first_round}});
  commit();
}

void LedgerWriter::resume(const LedgerHead& head) {
  const std::vector<std::string> lines = read_lines(path());
  if (head.entries == 0 || lines.size() < head.entries || line_hash(lines[head.entries - 1]) != head.sha256)
    throw std::runtime_error("ledger " + path() + ": does not hold the head the latest checkpoint records (entry " +
                             std::to_string(head.entries) + ", SHA-256 " + head.sha256 + "); it was edited, cut or replaced");
  const std::vector<std::string> after(lines.begin() + static_cast<std::ptrdiff_t>(head.entries), lines.end());
  if (!after.empty()) {
    move_to_abandoned(after);
    std::string kept;
    for (size_t i = 0; i < head.entries; ++i) kept += lines[i] + "\n";
    write_file_atomic(path(), kept);
  }
  head_ = head;
  pending_.clear();
  // The last identity the chain names signs on; another one is announced first.
  nlohmann::json last_identity;
  for (size_t i = 0; i < head.entries; ++i) {
    const auto e = nlohmann::json::parse(lines[i]);
    if (e.contains("aggregator")) last_identity = e["aggregator"];
  }
  if (last_identity != identity_) {
    append({{"kind", "aggregator"}, {"aggregator", identity_}});
    commit();
  }
}

void LedgerWriter::append(nlohmann::json entry) {
  entry["seq"] = head_.entries;
  entry["prev"] = head_.sha256;
  entry["signature"] = base64_encode(key_.sign(entry_message(entry)), Base64::kStandard);
  std::string line = entry.dump();
  head_.sha256 = line_hash(line);
  ++head_.entries;
  pending_.push_back(std::move(line));
}

void LedgerWriter::commit() {
  if (pending_.empty()) return;
  std::string bytes;
  for (const auto& l : pending_) bytes += l + "\n";
  append_durably(path(), bytes);
  pending_.clear();
}

}  // namespace zk0
