# No absolute machine path in the tree: a clone anywhere must be able to follow every reference, and no
# file tells where it was made. Tracked files (git ls-files) are searched for paths under the usual home
# and work roots, the run logs under models/logs/ included: write a device machine's paths as
# <device>/... and this machine's relative to the checkout. Refer to the shared folder beside the
# checkout relatively (../shared/...), and to the model contract as docs/model.md.
# Usage: cmake -DSRC=<source root> -P check_no_abs_paths.cmake
cmake_minimum_required(VERSION 3.20)
find_program(GIT git)
if(NOT GIT OR NOT EXISTS ${SRC}/.git)
  message("SKIPPED: not a git checkout (the check searches tracked files)")
  return()
endif()
# Written so that this file does not match itself: an absolute path starting at one of these roots.
set(roots "wor[k]|hom[e]|User[s]|roo[t]|mn[t]")
execute_process(COMMAND ${GIT} -C ${SRC} grep -n -I -E "(^|[^A-Za-z0-9_.~-])/(${roots})/" -- .
                RESULT_VARIABLE rc OUTPUT_VARIABLE hits ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "Absolute machine paths in tracked files (make them relative; in a log, e.g.\n"
          "  sed -i -E 's#(^|[^A-Za-z0-9_.~-])/roo[t]/#\\1<device>/#g' FILE):\n${hits}")
elseif(NOT rc EQUAL 1)
  message(FATAL_ERROR "git grep failed (${rc}): ${err}")
endif()
message(STATUS "no absolute machine paths in tracked files")
