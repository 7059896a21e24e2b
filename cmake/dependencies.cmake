# Finds the system packages ndflow builds on (installed by tools/setup.sh).
# Nothing is vendored: a missing package is an error telling what to run.
find_package(dnnl CONFIG QUIET)
if(NOT dnnl_FOUND)
  message(FATAL_ERROR "oneDNN (libdnnl-dev) not found: run tools/setup.sh")
endif()
find_package(OpenMP REQUIRED COMPONENTS CXX)
# The .ndf header is JSON (core/format_*.cc); header-only, private to libndflow.
find_package(nlohmann_json 3 QUIET)
if(NOT nlohmann_json_FOUND)
  message(FATAL_ERROR "nlohmann_json 3 (Debian package nlohmann-json3-dev) not found: run tools/setup.sh")
endif()
# distributed/: collectives and the cluster over MPI (only the C API: no libmpi_cxx).
set(MPI_CXX_SKIP_MPICXX ON)
find_package(MPI QUIET COMPONENTS CXX)
if(NOT MPI_CXX_FOUND)
  message(FATAL_ERROR "MPI (Debian packages libopenmpi-dev openmpi-bin) not found: run tools/setup.sh")
endif()
# distributed/ps/: the parameter server's transport is ZeroMQ, not MPI (DESIGN.md §7).
# Debian ships no CMake config for libzmq, so it is found by path; cppzmq
# (zmq.hpp) is header-only. Private to libndflow: no public header includes it.
find_path(NDFLOW_ZMQ_INCLUDE_DIR zmq.h)
find_path(NDFLOW_CPPZMQ_INCLUDE_DIR zmq.hpp)
find_library(NDFLOW_ZMQ_LIBRARY zmq)
if(NOT NDFLOW_ZMQ_INCLUDE_DIR OR NOT NDFLOW_CPPZMQ_INCLUDE_DIR OR NOT NDFLOW_ZMQ_LIBRARY)
  message(FATAL_ERROR "ZeroMQ (Debian packages libzmq3-dev cppzmq-dev) not found: run tools/setup.sh")
endif()
add_library(ndflow::zmq INTERFACE IMPORTED)
target_include_directories(ndflow::zmq SYSTEM INTERFACE ${NDFLOW_ZMQ_INCLUDE_DIR} ${NDFLOW_CPPZMQ_INCLUDE_DIR})
target_link_libraries(ndflow::zmq INTERFACE ${NDFLOW_ZMQ_LIBRARY})
if(NDFLOW_BUILD_TESTS)
  find_package(Catch2 2 QUIET)
  if(NOT Catch2_FOUND)
    message(FATAL_ERROR "Catch2 v2 (Debian package catch2) not found: run tools/setup.sh")
  endif()
endif()
