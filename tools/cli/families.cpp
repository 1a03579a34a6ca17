// Registers every family once for the tessera command (tools/cli/CMakeLists.txt): the other sources
// are built with TESSERA_EXTERN_FAMILIES, so each family's model is compiled here only
// (docs/architecture.md, "Build time").
#include <tessera/tessera.hpp>
