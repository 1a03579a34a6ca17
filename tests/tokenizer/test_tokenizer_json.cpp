#include <catch2/catch.hpp>

#include <tessera/tokenizer/tokenizer.hpp>

using namespace tessera;
