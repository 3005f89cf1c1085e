# 64-bit ARM Linux (Raspberry Pi 3/4/5 with a 64-bit OS): Debian's g++-aarch64-linux-gnu, tests under
# qemu-aarch64. ARMv8-A always has NEON (xsimd picks arm64+neon), so no -mfpu/-march flag is needed.
#   cmake -S . -B build-cross-aarch64 -DCMAKE_TOOLCHAIN_FILE=toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(QTF_CROSS_TRIPLE aarch64-linux-gnu)
set(QTF_CROSS_QEMU qemu-aarch64)
# Debian's aarch64 GCC 12.2 crashes (internal compiler error in vect_transform_reduction) when it
# loop-vectorizes some std::fmax reductions over double, e.g. the max-error loops of the kernels and
# quantum tests, even at -O2. Loop auto-vectorization is off for this target; the engine's hot loops are
# explicit NEON (xsimd), and straight-line (SLP) vectorization stays on.
set(CMAKE_C_FLAGS_INIT "-fno-tree-loop-vectorize")
set(CMAKE_CXX_FLAGS_INIT "-fno-tree-loop-vectorize")
include(${CMAKE_CURRENT_LIST_DIR}/linux-cross-common.cmake)
