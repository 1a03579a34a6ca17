// Registers every family once for the test executables that load models (tests/CMakeLists.txt).
//
// A family registers itself from its header (families/<name>.hpp), so each translation unit that
// includes one compiles that family's whole model. The test sources are built with
// TESSERA_EXTERN_FAMILIES, which leaves the registrations out of them; this file, built without it,
// holds them all (the ones the library registers: <tessera/tessera.hpp>), and is linked into the
// modules that load models. (docs/architecture.md, "Build time".)
#include <tessera/tessera.hpp>
