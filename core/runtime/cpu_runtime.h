#pragma once
// LibTorch's CPU settings for one process, applied before the first tensor op.

#include <string>

namespace zk0 {

struct CpuRuntime {
  std::string blas;  // "openblas-openmp", "openblas-pthreads", "openblas-sequential" or "other"
  int threads = 1;   // intra-op threads LibTorch (and an OpenMP BLAS) use
};

// The CPUs this process may run on: its affinity, capped by its cgroup's CPU quota (a pod's CPU
// limit), which the affinity mask does not show.
int available_cpus();

// `cores` as a spec's resources.cpu gives them (rounded up); 0 picks OMP_NUM_THREADS when it is
// set, else available_cpus().
// With OpenBLAS's pthreads build LibTorch stays at one thread: OpenBLAS keeps its own spinning
// pool, and two pools on the same cores ran the SmolVLA step 4x slower. With the OpenMP build
// (the one zk0 links on Debian) both share one pool, and elementwise ops run on every core.
// Also keeps freed heap memory for reuse: a training step frees and reallocates the same
// activation sizes, and glibc's defaults hand them back to the kernel and fault them in again.
CpuRuntime configure_cpu_runtime(double cores = 0);

}  // namespace zk0
