#pragma once
// A robot owner's network on this machine: a network namespace joined to this one by a veth pair
// and nothing else, no default route. The owner's side reaches this side's end of the pair and,
// when asked, single addresses routed through it (a cluster node's); nothing else of this
// machine, its loopback included. Needs root. Deleted with the object.
#include <string>
#include <vector>

namespace zk0::test {

class OwnerNetwork {
 public:
  // Throws std::runtime_error with ip's words when the namespace cannot be made.
  explicit OwnerNetwork(const std::vector<std::string>& routed = {});
  ~OwnerNetwork();
  OwnerNetwork(const OwnerNetwork&) = delete;
  OwnerNetwork& operator=(const OwnerNetwork&) = delete;

  const std::string& name() const { return name_; }
  const std::string& host_address() const { return host_address_; }  // this side's end of the pair
  // argv run inside the namespace (`ip netns exec NAME argv...`), for Process.
  std::vector<std::string> inside(const std::vector<std::string>& argv) const;

 private:
  std::string name_, host_link_, host_address_;
};

}  // namespace zk0::test
