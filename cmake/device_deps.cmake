# The libraries a device build (ZK0_DEVICE_BUILD) links, from one folder that
# scripts/prepare-gpu-check.sh fills on a machine with the packages: headers in include/, static
# libraries in lib/, so that the GPU machine needs nothing installed beyond PyTorch and a compiler.
set(ZK0_DEVICE_DEPS "" CACHE PATH "The device build's dependencies: include/ and lib/ (scripts/prepare-gpu-check.sh)")
if(NOT ZK0_DEVICE_DEPS OR NOT EXISTS ${ZK0_DEVICE_DEPS}/include/nlohmann/json.hpp)
  message(FATAL_ERROR "ZK0_DEVICE_BUILD needs ZK0_DEVICE_DEPS, a folder scripts/prepare-gpu-check.sh filled "
                      "(it has no include/nlohmann/json.hpp: '${ZK0_DEVICE_DEPS}')")
endif()
set(_include ${ZK0_DEVICE_DEPS}/include)

function(zk0_device_static_library target file)
  if(NOT EXISTS ${ZK0_DEVICE_DEPS}/lib/${file})
    message(FATAL_ERROR "ZK0_DEVICE_DEPS has no lib/${file}: run scripts/prepare-gpu-check.sh again")
  endif()
  add_library(${target} STATIC IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES IMPORTED_LOCATION ${ZK0_DEVICE_DEPS}/lib/${file}
                                             INTERFACE_INCLUDE_DIRECTORIES ${_include}
                                             INTERFACE_LINK_LIBRARIES "${ARGN}")
endfunction()

add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED GLOBAL)
set_target_properties(nlohmann_json::nlohmann_json PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${_include})
zk0_device_static_library(yaml-cpp libyaml-cpp.a)
zk0_device_static_library(OpenSSL::Crypto libcrypto.a "Threads::Threads;${CMAKE_DL_LIBS}")
zk0_device_static_library(GTest::gtest libgtest.a Threads::Threads)
zk0_device_static_library(GTest::gtest_main libgtest_main.a GTest::gtest)
set(ZK0_TOKENIZERS_PREBUILT ${ZK0_DEVICE_DEPS}/lib/libzk0_tokenizers.a CACHE FILEPATH "" FORCE)
