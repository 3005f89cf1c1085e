# Shared part of the Linux cross toolchains (aarch64, armv7): included after the target file has set
# QTF_CROSS_TRIPLE and QTF_CROSS_QEMU. Uses Debian's cross compilers, their target libraries under
# /usr/<triple>, and runs test executables under qemu-user.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${QTF_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${QTF_CROSS_TRIPLE}-g++)

# Header-only dependencies (xsimd, doctest, Eigen) come from the host's /usr/include, but putting all of
# /usr/include on a cross compiler's path would mix the host's C library headers into the build. So a
# small stage directory holds links to just those three, and it is the only extra find root: find_path
# re-roots its /usr/include hint there. Libraries and packages are searched only in the target root, so
# no host library (e.g. Google Benchmark) can leak into a link.
set(QTF_HOST_HEADERS ${CMAKE_BINARY_DIR}/host-headers)
foreach(dir xsimd doctest eigen3)
  if(EXISTS /usr/include/${dir} AND NOT EXISTS ${QTF_HOST_HEADERS}/usr/include/${dir})
    file(MAKE_DIRECTORY ${QTF_HOST_HEADERS}/usr/include)
    file(CREATE_LINK /usr/include/${dir} ${QTF_HOST_HEADERS}/usr/include/${dir} SYMBOLIC)
  endif()
endforeach()
set(CMAKE_FIND_ROOT_PATH /usr/${QTF_CROSS_TRIPLE} ${QTF_HOST_HEADERS})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest (and add_test COMMANDs naming a target) run through qemu-user with the target's loader/libc.
set(CMAKE_CROSSCOMPILING_EMULATOR ${QTF_CROSS_QEMU} -L /usr/${QTF_CROSS_TRIPLE})

# Google Benchmark is a host library: no benchmarks in cross builds.
set(QTF_BUILD_BENCH OFF CACHE BOOL "Build the Google Benchmark executables (host only)" FORCE)
