// Catch2's main for the ndflow C++ test suite.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
