# 32-bit ARM Linux, ARMv7-A with NEON and hard float (Raspberry Pi 2/3 with a 32-bit OS, Cortex-A7/A53):
# Debian's g++-arm-linux-gnueabihf, tests under qemu-arm. -mfpu=neon-vfpv4 lets xsimd pick arm32+neon.
#   cmake -S . -B build-cross-armv7 -DCMAKE_TOOLCHAIN_FILE=toolchains/armv7-linux-gnueabihf.cmake
set(CMAKE_SYSTEM_PROCESSOR armv7)
set(QTF_CROSS_TRIPLE arm-linux-gnueabihf)
set(QTF_CROSS_QEMU qemu-arm)
# _FILE_OFFSET_BITS=64: 64-bit off_t and ino_t, so model files over 2 GiB can be mapped and readdir works
# on filesystems with 64-bit inode numbers (under qemu-user on a 64-bit host it fails with EOVERFLOW).
set(CMAKE_C_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -D_FILE_OFFSET_BITS=64")
# -Wno-psabi: GCC notes that the ABI for some arguments changed in GCC 7.1; everything here is built
# with one newer GCC, so the note is noise.
set(CMAKE_CXX_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -D_FILE_OFFSET_BITS=64 -Wno-psabi")
include(${CMAKE_CURRENT_LIST_DIR}/linux-cross-common.cmake)
