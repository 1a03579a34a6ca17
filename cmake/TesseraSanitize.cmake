# tessera_fill_sanitizer_flags(target list): fills an INTERFACE target with the flags of the
# sanitizers in `list`, clang/gcc -fsanitize= syntax: "address,undefined", "thread", or "" (none).
# The in-tree tests, examples, CLI and benchmarks link the target (tessera_sanitizers); it is not
# exported: a consumer chooses its own sanitizers. Undefined behaviour aborts the program
# (-fno-sanitize-recover), so a UBSan finding fails its test instead of printing and passing.
function(tessera_fill_sanitizer_flags target list)
  if(list STREQUAL "")
    return()
  endif()
  string(REPLACE "," ";" names "${list}")
  foreach(name ${names})
    if(NOT name MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "TESSERA_SANITIZE='${list}': '${name}' is not one of address, undefined, thread, leak")
    endif()
  endforeach()
  if("thread" IN_LIST names AND ("address" IN_LIST names OR "leak" IN_LIST names))
    message(FATAL_ERROR "TESSERA_SANITIZE='${list}': thread cannot be combined with address or leak")
  endif()
  set(flags -fsanitize=${list} -fno-omit-frame-pointer -g1)  # -g1: line numbers in reports
  if("undefined" IN_LIST names)
    list(APPEND flags -fno-sanitize-recover=undefined)
  endif()
  target_compile_options(${target} INTERFACE ${flags})
  target_link_options(${target} INTERFACE -fsanitize=${list})
endfunction()
