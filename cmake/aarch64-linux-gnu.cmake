# Cross build for AArch64 Linux on a Debian host: Debian's
# gcc-aarch64-linux-gnu, the arm64 builds of libuv, Concurrency Kit and
# Criterion, and qemu-user to run the tests:
#
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DWEFT_AARCH64_SYSROOT=<dir>
#
# The arm64 libraries come from one of two places:
#  - WEFT_AARCH64_SYSROOT (cache variable or environment variable): a
#    directory into which the arm64 .deb packages were unpacked, as
#    scripts/test's aarch64 stage does. This is the way on a machine that
#    builds for its own architecture too: Debian 12 cannot install
#    libck0:arm64 or libnanomsg5:arm64 (Criterion's) next to the amd64
#    ones (they are not Multi-Arch: same), so installing them with apt
#    would remove the host's Criterion and Concurrency Kit.
#  - otherwise the host's own multiarch directories (/usr/lib/aarch64-linux-gnu),
#    for a machine where `apt-get install libck-dev:arm64 ...` is fine.
#
# Running the tests: ctest runs each test program through qemu
# (CMAKE_CROSSCOMPILING_EMULATOR), but Criterion re-executes the program
# for every test and the examples are started by a cmake script, so the
# kernel must also be able to exec an AArch64 binary itself: binfmt_misc
# with qemu-user-static's qemu-aarch64 entry (scripts/test registers it),
# and QEMU_LD_PREFIX=<sysroot> in the environment so that those processes
# find the arm64 loader and libraries too.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)
# C++ only checks that the public headers compile as C++ (with
# g++-aarch64-linux-gnu, which scripts/test's aarch64 stage installs).
find_program(WEFT_AARCH64_CXX aarch64-linux-gnu-g++)
if(WEFT_AARCH64_CXX)
  set(CMAKE_CXX_COMPILER ${WEFT_AARCH64_CXX})
endif()
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# The toolchain file is read again for every try_compile project, which
# sees the environment but not this project's cache.
if(NOT DEFINED WEFT_AARCH64_SYSROOT AND DEFINED ENV{WEFT_AARCH64_SYSROOT})
  set(WEFT_AARCH64_SYSROOT "$ENV{WEFT_AARCH64_SYSROOT}")
endif()
set(WEFT_AARCH64_SYSROOT "${WEFT_AARCH64_SYSROOT}" CACHE PATH
  "Unpacked arm64 packages to build against (empty: the host's multiarch directories)")
set(ENV{WEFT_AARCH64_SYSROOT} "${WEFT_AARCH64_SYSROOT}")

# pkg-config must describe the arm64 libraries, never the host's. Set in
# the environment so that it holds for every pkg_check_modules, also when
# cmake re-runs itself from the build.
unset(ENV{PKG_CONFIG_PATH})
if(WEFT_AARCH64_SYSROOT)
  set(CMAKE_SYSROOT "${WEFT_AARCH64_SYSROOT}")
  set(CMAKE_FIND_ROOT_PATH "${WEFT_AARCH64_SYSROOT}")
  set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
  set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "${WEFT_AARCH64_SYSROOT}")
  set(ENV{PKG_CONFIG_LIBDIR}
    "${WEFT_AARCH64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${WEFT_AARCH64_SYSROOT}/usr/share/pkgconfig")
  set(WEFT_QEMU_PREFIX "${WEFT_AARCH64_SYSROOT}")
else()
  unset(ENV{PKG_CONFIG_SYSROOT_DIR})
  set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
  set(WEFT_QEMU_PREFIX /)
endif()

# -L: where qemu looks first for the program's loader and every path it
# opens (/lib/ld-linux-aarch64.so.1, /usr/lib/aarch64-linux-gnu/...).
# qemu-run (next to this file) runs a program again when qemu deadlocks in
# one of its forks, which qemu-user 7.2 now and then does (the script says
# how it tells that hang from a test's).
find_program(WEFT_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64 REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR
  "${CMAKE_CURRENT_LIST_DIR}/qemu-run;${WEFT_QEMU_AARCH64};-L;${WEFT_QEMU_PREFIX}")
