# Apache Arrow / Parquet C++. Debian 12 ships no Arrow packages, so local builds take the C++
# libraries and headers that the pyarrow wheel carries (pinned in scripts/requirements.txt,
# installed into .venv by scripts/setup.sh), and so do the container images (docker/zk0.Dockerfile).
# ZK0_ARROW_FROM=system takes an Arrow installed with its CMake packages (Apache's own, for example).
set(ZK0_ARROW_FROM "wheel" CACHE STRING "Where Arrow/Parquet C++ come from: wheel (pyarrow in .venv) or system")
if(ZK0_ARROW_FROM STREQUAL "system")
  find_package(Arrow CONFIG REQUIRED)
  find_package(Parquet CONFIG REQUIRED)
  add_library(zk0::arrow INTERFACE IMPORTED)
  set_target_properties(zk0::arrow PROPERTIES INTERFACE_LINK_LIBRARIES Arrow::arrow_shared)
  add_library(zk0::parquet INTERFACE IMPORTED)
  set_target_properties(zk0::parquet PROPERTIES INTERFACE_LINK_LIBRARIES Parquet::parquet_shared)
  message(STATUS "Arrow ${Arrow_VERSION} from the system")
  return()
endif()
set(ZK0_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH "Python of the project venv that holds pyarrow")
execute_process(
  COMMAND "${ZK0_PYTHON}" -c "import pyarrow as pa; print(pa.get_include()); print(pa.get_library_dirs()[0]); print(pa.__version__)"
  OUTPUT_VARIABLE _pyarrow OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _pyarrow_rc)
if(NOT _pyarrow_rc EQUAL 0)
  message(FATAL_ERROR "pyarrow not found in ${ZK0_PYTHON}: run scripts/setup.sh (make does)")
endif()
string(REPLACE "\n" ";" _pyarrow "${_pyarrow}")
list(GET _pyarrow 0 ARROW_INCLUDE_DIR)
list(GET _pyarrow 1 ARROW_LIB_DIR)
list(GET _pyarrow 2 ARROW_VERSION)
string(REGEX REPLACE "^([0-9]+)\\.([0-9]+).*" "\\1\\2" _so "${ARROW_VERSION}")
math(EXPR _so "${CMAKE_MATCH_1} * 100 + ${CMAKE_MATCH_2}")
foreach(lib arrow parquet)
  set(_path "${ARROW_LIB_DIR}/lib${lib}.so.${_so}")
  if(NOT EXISTS "${_path}")
    message(FATAL_ERROR "${_path} not found in the pyarrow wheel")
  endif()
  add_library(zk0::${lib} SHARED IMPORTED)
  set_target_properties(zk0::${lib} PROPERTIES IMPORTED_LOCATION "${_path}" IMPORTED_NO_SONAME FALSE
                                               INTERFACE_INCLUDE_DIRECTORIES "${ARROW_INCLUDE_DIR}")
endforeach()
message(STATUS "Arrow ${ARROW_VERSION} from pyarrow: ${ARROW_LIB_DIR}")

# The pyarrow wheel's libparquet carries its own OpenSSL and exports all of it (EVP_*, SHA256_*).
# Whatever comes first in an executable's DT_NEEDED list wins symbol lookup, so without this our
# SHA-256 and gRPC's TLS would run on that copy (built without SHA-NI, and another version than
# Debian's libssl expects). Naming Debian's libssl and libcrypto before everything else makes
# them win.
add_link_options(-Wl,--push-state,--no-as-needed -lssl -lcrypto -Wl,--pop-state)
