#include "support/owner_network.h"

#include <unistd.h>

#include <stdexcept>

#include "support/test_support.h"

namespace zk0::test {

OwnerNetwork::OwnerNetwork(const std::vector<std::string>& routed) {
  const std::string tag = std::to_string(getpid() % 100000);
  name_ = "zk0-owner-" + tag;
  host_link_ = "zk0h" + tag;
  const std::string owner_link = "zk0o" + tag, subnet = "10.231." + std::to_string(getpid() % 250) + ".";
  host_address_ = subnet + "1";
  std::string routes;
  for (const auto& address : routed) routes += " && ip route add " + address + "/32 via " + host_address_;
  int rc = 0;
  const std::string out =
      run_command("ip netns add " + name_ + " && ip link add " + host_link_ + " type veth peer name " + owner_link + " netns " + name_ +
                      " && ip addr add " + host_address_ + "/30 dev " + host_link_ + " && ip link set " + host_link_ + " up && ip netns exec " +
                      name_ + " sh -c 'ip addr add " + subnet + "2/30 dev " + owner_link + " && ip link set " + owner_link +
                      " up && ip link set lo up" + routes + "' 2>&1",
                  &rc);
  if (rc != 0) {
    this->~OwnerNetwork();
    throw std::runtime_error("cannot make the owner's network namespace: " + out);
  }
}

OwnerNetwork::~OwnerNetwork() {
  // The veth goes with its namespace, its peer with it; deleting the link covers a failed setup.
  int rc = 0;
  run_command("ip netns delete " + name_ + " 2>&1", &rc);
  run_command("ip link delete " + host_link_ + " 2>&1", &rc);
}

std::vector<std::string> OwnerNetwork::inside(const std::vector<std::string>& argv) const {
  static const std::string ip = [] {
    std::string path = run_command("command -v ip");  // Process runs a path, not a name
    return path.substr(0, path.find_last_not_of("\n ") + 1);
  }();
  std::vector<std::string> full{ip, "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

}  // namespace zk0::test
