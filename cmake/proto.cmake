# Generates C++ and gRPC stubs for .proto files under proto/ into the build tree, as a static
# library per caller: zk0_proto for the product (proto/zk0/v1), others for tests.
set(ZK0_PROTO_DIR ${CMAKE_SOURCE_DIR}/proto)
set(ZK0_PROTO_OUT ${CMAKE_BINARY_DIR}/proto)
file(MAKE_DIRECTORY ${ZK0_PROTO_OUT})
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

# zk0_proto_library(TARGET NAME...): each NAME a path under proto/ without `.proto`.
function(zk0_proto_library target)
  set(sources)
  foreach(name ${ARGN})
    set(proto ${ZK0_PROTO_DIR}/${name}.proto)
    set(out ${ZK0_PROTO_OUT}/${name})
    get_filename_component(base ${name} NAME)
    add_custom_command(
      OUTPUT ${out}.pb.cc ${out}.pb.h ${out}.grpc.pb.cc ${out}.grpc.pb.h
      COMMAND protobuf::protoc
        --proto_path=${ZK0_PROTO_DIR} --cpp_out=${ZK0_PROTO_OUT} --grpc_out=${ZK0_PROTO_OUT}
        --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} ${proto}
      DEPENDS ${proto} protobuf::protoc
      COMMENT "protoc ${base}.proto")
    list(APPEND sources ${out}.pb.cc ${out}.grpc.pb.cc)
  endforeach()
  add_library(${target} STATIC ${sources})
  target_include_directories(${target} PUBLIC ${ZK0_PROTO_OUT})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf gRPC::grpc++)
  target_compile_options(${target} PRIVATE -w)
endfunction()

zk0_proto_library(zk0_proto zk0/v1/federation)
