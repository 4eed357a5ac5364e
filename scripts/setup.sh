#!/usr/bin/env bash
# Installs what limpq's GPU tests and demo need on a Debian machine: the software Vulkan
# adapter (Mesa lavapipe), Mesa's EGL / GLES with llvmpipe for the GL backend, and
# Fashion-MNIST; and the C++ compiler the C ABI's tests build
# their C++ program with (the C one, `cc`, is rustc's linker already), and valgrind, which
# they run both programs under. Skips what is already there.
set -euo pipefail
need=()
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || need+=(mesa-vulkan-drivers)
ldconfig -p | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
# wgpu's GL backend (tests/backend_gl.rs): EGL with Mesa's vendor library, and llvmpipe's
# DRI driver (swrast) it opens headless.
ldconfig -p | grep -q 'libEGL.so.1' || need+=(libegl1)
ldconfig -p | grep -q 'libEGL_mesa.so.0' || need+=(libegl-mesa0)
ldconfig -p | grep -q 'libGLESv2.so.2' || need+=(libgles2)
[ -n "$(ls /usr/lib/*/dri/swrast_dri.so 2>/dev/null)" ] || need+=(libgl1-mesa-dri)
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v c++ >/dev/null || need+=(g++)
command -v valgrind >/dev/null || need+=(valgrind)
# With --mpi (CI passes it): Open MPI and what the `mpi` feature's bindings need to build
# (libclang for bindgen), for the data-parallel tests under `mpirun -np 2`. The default build
# and `cargo test --workspace` need none of it.
if [ "${1:-}" = "--mpi" ]; then
  command -v mpirun >/dev/null || need+=(openmpi-bin)
  [ -e /usr/include/x86_64-linux-gnu/openmpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] \
    || need+=(libopenmpi-dev)
  ldconfig -p | grep -qE 'libclang(-[0-9.]+)?\.so' || need+=(libclang-dev)   # not libclang-cpp
  command -v pkg-config >/dev/null || need+=(pkg-config)
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
