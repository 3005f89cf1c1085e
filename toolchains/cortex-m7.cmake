# Bare-metal Cortex-M7 with double-precision FPU (e.g. STM32F7/H7, NXP i.MX RT): Debian's
# gcc-arm-none-eabi with newlib. Builds only the engine core (QTF_BARE_METAL); tools/firmware is an
# example firmware that links it and runs under qemu-system-arm (-M mps2-an500).
#   cmake -S tools/firmware -B build-cross-cortex-m7 -DCMAKE_TOOLCHAIN_FILE=toolchains/cortex-m7.cmake
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
# Compiler checks build a static library: linking needs the firmware's startup code and memory map.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(QTF_CPU_FLAGS "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16")
# Sections per function/object so the firmware link (--gc-sections) drops what it does not call.
set(CMAKE_C_FLAGS_INIT "${QTF_CPU_FLAGS} -ffunction-sections -fdata-sections")
set(CMAKE_CXX_FLAGS_INIT "${QTF_CPU_FLAGS} -ffunction-sections -fdata-sections")
set(CMAKE_ASM_FLAGS_INIT "${QTF_CPU_FLAGS}")

# xsimd is header-only; on Cortex-M it finds no SIMD arch, and the kernels use their scalar path.
# Only that one directory is staged as a find root, never the host's whole /usr/include.
set(QTF_HOST_HEADERS ${CMAKE_BINARY_DIR}/host-headers)
if(NOT EXISTS ${QTF_HOST_HEADERS}/usr/include/xsimd)
  file(MAKE_DIRECTORY ${QTF_HOST_HEADERS}/usr/include)
  file(CREATE_LINK /usr/include/xsimd ${QTF_HOST_HEADERS}/usr/include/xsimd SYMBOLIC)
endif()
set(CMAKE_FIND_ROOT_PATH /usr/lib/arm-none-eabi ${QTF_HOST_HEADERS})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# No OS: only the core library (no tests, benchmarks or command line tool; see the top level).
set(QTF_BARE_METAL ON CACHE BOOL "Build only the engine core (no OS: firmware targets)" FORCE)

# ctest runs firmware images on qemu's Cortex-M7 board (mps2-an500); printf and the exit status go
# through semihosting. The image path is appended right after -kernel.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-system-arm -M mps2-an500 -nographic -semihosting -kernel)
