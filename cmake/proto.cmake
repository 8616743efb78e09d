# Generates C++ for proto/zk0/v1/*.proto into the build tree as the zk0_proto library.
set(ZK0_PROTO_DIR ${CMAKE_SOURCE_DIR}/proto)
set(ZK0_PROTO_OUT ${CMAKE_BINARY_DIR}/proto)
file(MAKE_DIRECTORY ${ZK0_PROTO_OUT})
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

set(zk0_proto_sources)
foreach(name federation)
  set(proto ${ZK0_PROTO_DIR}/zk0/v1/${name}.proto)
  set(out ${ZK0_PROTO_OUT}/zk0/v1/${name})
  add_custom_command(
    OUTPUT ${out}.pb.cc ${out}.pb.h ${out}.grpc.pb.cc ${out}.grpc.pb.h
    COMMAND protobuf::protoc
      --proto_path=${ZK0_PROTO_DIR} --cpp_out=${ZK0_PROTO_OUT} --grpc_out=${ZK0_PROTO_OUT}
      --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} ${proto}
    DEPENDS ${proto} protobuf::protoc
    COMMENT "protoc ${name}.proto")
  list(APPEND zk0_proto_sources ${out}.pb.cc ${out}.grpc.pb.cc)
endforeach()

add_library(zk0_proto STATIC ${zk0_proto_sources})
target_include_directories(zk0_proto PUBLIC ${ZK0_PROTO_OUT})
target_link_libraries(zk0_proto PUBLIC protobuf::libprotobuf gRPC::grpc++)
target_compile_options(zk0_proto PRIVATE -w)
