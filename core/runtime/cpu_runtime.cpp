#include "core/runtime/cpu_runtime.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/util/log.h"

namespace zk0 {

int available_cpus() {
  int cpus = 1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  std::ifstream quota_file("/sys/fs/cgroup/cpu.max");
  std::string quota;
  double period = 0;
  if (quota_file >> quota >> period && quota != "max" && period > 0) {
    const double limit = std::stod(quota) / period;
    cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(limit))));
  }
  return cpus;
}

namespace {

// OpenBLAS reports how it was built; other BLAS libraries (MKL in PyTorch's LibTorch) lack the
// symbol. Looked up at run time so that zk0 does not link against OpenBLAS itself.
std::string blas_threading() {
  using GetParallel = int (*)();
  const auto get_parallel = reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  if (!get_parallel) return "other";
  switch (get_parallel()) {
    case 0: return "openblas-sequential";
    case 1: return "openblas-pthreads";
    default: return "openblas-openmp";
  }
}

int requested_threads(double cores) {
  if (cores > 0) return static_cast<int>(std::ceil(cores));
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return available_cpus();
}

}  // namespace

CpuRuntime configure_cpu_runtime(double cores) {
  // Blocks up to glibc's 32 MiB ceiling come from the heap rather than fresh mmaps, and the heap
  // keeps up to 1 GiB free at its top instead of trimming it after every step.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
  CpuRuntime runtime;
  runtime.blas = blas_threading();
  const int requested = requested_threads(cores);
  runtime.threads = runtime.blas == "openblas-pthreads" ? 1 : requested;
  at::set_num_threads(runtime.threads);
  log_info("cpu_runtime", {kv("blas", runtime.blas), kv("threads", runtime.threads)});
  if (runtime.threads < requested)
    log_warn("cpu_runtime_single_threaded",
             {kv("reason", "OpenBLAS pthreads build; install libopenblas0-openmp and rebuild to use every core")});
  return runtime;
}

}  // namespace zk0
