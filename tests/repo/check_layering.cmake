# The engine's layering, enforced: a file in engine/<folder>/ may include its own folder's headers and
# those of lower layers only:
#
#   capi -> host -> import -> runtime -> model -> quantum | format | energy -> kernels -> core
#
# Folders on one layer know nothing of each other (the simulator knows no file format, the format no
# math). The core (every folder but host and capi) also stays off the OS and the heap: no file or
# stream headers, no allocating containers, no exceptions or RTTI. A new folder must be given a layer
# here. Usage: cmake -DSRC=<source root> -P check_layering.cmake
cmake_minimum_required(VERSION 3.20)
set(layer_core 0)
set(layer_kernels 1)
set(layer_quantum 2)
set(layer_format 2)
set(layer_energy 2)
set(layer_model 3)
set(layer_runtime 4)
set(layer_import 5)
set(layer_host 6)
set(layer_capi 7)
set(hosted import host capi)
# Known exceptions, each a file and the folder it may include against the layering, with the reason.
# Keep this list short: every entry is a cycle between two folders.
#  - The SIMD variants of the simulator's inner loops (fidelities, DARUAN fourier) are compiled with the
#    kernels' per-variant flags and sit in the kernels' dispatch table, so the table and the variant body
#    see quantum's parameter types (engine/kernels/dispatch.h explains the dispatch).
set(allowed_upward
  "kernels/dispatch.cpp:quantum"
  "kernels/simd_body.inc:quantum")
#  - The importers (engine/import: other formats -> a .qtf image) write with host's Writer and read files
#    with host's FileBytes, two leaf files that know only format/ and core/; host's loader calls the
#    importers. A GGUF's matrices requantized to q4 use `qtf quantize`'s own row rounding
#    (host/quantize.h's quantize_q4_row: a function of kernels/ alone), so q4 rounding stays in one place.
#    Only those three headers, from import/ only.
set(allowed_upward_headers
  "import:host/writer.h"
  "import:host/file.h"
  "import:host/quantize.h")
# Headers the core must not include: OS and files, allocating containers, exceptions and RTTI.
set(core_banned "fstream|iostream|filesystem|sys/.*|unistd\\.h|fcntl\\.h|dirent\\.h|string|vector|map|unordered_map|set|list|deque|memory|functional|stdexcept|exception|typeinfo")

file(GLOB_RECURSE files RELATIVE ${SRC}/engine ${SRC}/engine/*.h ${SRC}/engine/*.hpp ${SRC}/engine/*.inc ${SRC}/engine/*.c
     ${SRC}/engine/*.cpp)
set(errors "")
set(checked 0)
foreach(f ${files})
  if(NOT f MATCHES "^([^/]+)/")
    continue()
  endif()
  set(from ${CMAKE_MATCH_1})
  if(NOT DEFINED layer_${from})
    string(APPEND errors "engine/${f}: folder '${from}' has no layer in tests/repo/check_layering.cmake\n")
    continue()
  endif()
  file(STRINGS ${SRC}/engine/${f} lines REGEX "^[ \t]*#[ \t]*include")
  foreach(line ${lines})
    math(EXPR checked "${checked} + 1")
    if(line MATCHES "#[ \t]*include[ \t]*\"([^/\"]+)/([^\"]*)\"")
      set(to ${CMAKE_MATCH_1})
      set(included "${CMAKE_MATCH_1}/${CMAKE_MATCH_2}")
      if(NOT DEFINED layer_${to})
        string(APPEND errors "engine/${f}: includes from '${to}/', which is not an engine folder: ${line}\n")
      elseif(NOT to STREQUAL from AND NOT layer_${to} LESS layer_${from} AND NOT "${f}:${to}" IN_LIST allowed_upward
             AND NOT "${from}:${included}" IN_LIST allowed_upward_headers)
        string(APPEND errors "engine/${f}: ${from} (layer ${layer_${from}}) may not include ${to} (layer ${layer_${to}}): ${line}\n")
      endif()
    elseif(line MATCHES "#[ \t]*include[ \t]*<([^>]+)>")
      set(header ${CMAKE_MATCH_1})
      if(NOT from IN_LIST hosted AND header MATCHES "^(${core_banned})$")
        string(APPEND errors "engine/${f}: the core (${from}) may not include <${header}> (OS, heap, exceptions): ${line}\n")
      endif()
    endif()
  endforeach()
endforeach()
if(errors)
  message(FATAL_ERROR "Layering violations (tests/repo/check_layering.cmake says what may include what):\n${errors}")
endif()
list(LENGTH files n)
message(STATUS "layering holds: ${checked} includes in ${n} engine files")
