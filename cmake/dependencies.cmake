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
if(NDFLOW_BUILD_TESTS)
  find_package(Catch2 2 QUIET)
  if(NOT Catch2_FOUND)
    message(FATAL_ERROR "Catch2 v2 (Debian package catch2) not found: run tools/setup.sh")
  endif()
endif()
