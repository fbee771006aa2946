# LibTorch, fmt and CUDA for saddle. Two LibTorch builds are supported:
#   * Debian's libtorch-dev (1.13, CPU only): the light default;
#   * the C++ library inside the PyPI `torch` wheel (2.x, CUDA), found through
#     -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)').
# Defines the targets saddle_torch (LibTorch) and saddle_fmt, and SADDLE_WITH_CUDA / SADDLE_WITH_NCCL.

# The CUDA architectures LibTorch's CMake compiles for (it ignores CMAKE_CUDA_ARCHITECTURES): A100
# and H100 unless told otherwise, instead of the wheel's eleven.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "8.0;9.0")
endif()
find_package(Torch REQUIRED)
get_filename_component(SADDLE_TORCH_PREFIX "${Torch_DIR}/../../.." ABSOLUTE)
set(SADDLE_TORCH_VERSION "${Torch_VERSION}")
# TorchConfig finds Caffe2 (its other half) in the system directories before its own; on a machine
# with Debian's libtorch-dev too, a CMAKE_PREFIX_PATH that names the wheel's Torch/ folder rather
# than LibTorch's CMake prefix mixes the two.
get_filename_component(_caffe2_dir "${Caffe2_DIR}" ABSOLUTE)
string(FIND "${_caffe2_dir}" "${SADDLE_TORCH_PREFIX}/" _caffe2_inside)
if(NOT _caffe2_inside EQUAL 0)
  message(FATAL_ERROR "LibTorch from ${SADDLE_TORCH_PREFIX} but its Caffe2 half from ${Caffe2_DIR}: "
                      "pass LibTorch's CMake prefix, -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch; "
                      "print(torch.utils.cmake_prefix_path)'), or -DCaffe2_DIR=<that prefix>/Caffe2")
endif()
message(STATUS "saddle: LibTorch ${Torch_VERSION} from ${SADDLE_TORCH_PREFIX}")

# On a machine that has both Debian's libtorch-dev and a wheel, TorchConfig's find_library() calls
# search the system directories before the wheel's, so c10 resolves to Debian's 1.13 copy while
# the rest is the wheel's. Every library that the wheel itself ships is taken from the wheel.
set(_saddle_torch_libraries "")
foreach(_lib IN LISTS TORCH_LIBRARIES)
  if(IS_ABSOLUTE "${_lib}")
    string(FIND "${_lib}" "${SADDLE_TORCH_PREFIX}/" _inside)
    get_filename_component(_name "${_lib}" NAME)
    if(NOT _inside EQUAL 0 AND EXISTS "${SADDLE_TORCH_PREFIX}/lib/${_name}")
      message(STATUS "saddle: using ${SADDLE_TORCH_PREFIX}/lib/${_name} instead of ${_lib}")
      set(_lib "${SADDLE_TORCH_PREFIX}/lib/${_name}")
    endif()
  endif()
  list(APPEND _saddle_torch_libraries "${_lib}")
endforeach()

# LibTorch's config exports a plain library list; wrap it in one interface target.
add_library(saddle_torch INTERFACE)
target_include_directories(saddle_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_link_libraries(saddle_torch INTERFACE ${_saddle_torch_libraries})
if(TORCH_CXX_FLAGS)
  separate_arguments(_saddle_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(saddle_torch INTERFACE ${_saddle_torch_flags})
endif()

# fmt. The wheels ship fmt's headers (fmt 12 in torch 2.11) in LibTorch's include directory, which
# comes first on the include path; those headers and the system's libfmt (fmt 9 on Debian 12) do
# not link together. With such a LibTorch, fmt is used header-only from LibTorch's copy.
add_library(saddle_fmt INTERFACE)
set(_torch_fmt "${SADDLE_TORCH_PREFIX}/include/fmt/format.h")
if(EXISTS "${_torch_fmt}" AND NOT "${SADDLE_TORCH_PREFIX}/include" IN_LIST
   CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
  set(SADDLE_FMT_FROM_TORCH ON)
  target_compile_definitions(saddle_fmt INTERFACE FMT_HEADER_ONLY=1)
  target_link_libraries(saddle_fmt INTERFACE saddle_torch)
  message(STATUS "saddle: fmt header-only from ${SADDLE_TORCH_PREFIX}/include")
else()
  set(SADDLE_FMT_FROM_TORCH OFF)
  find_package(fmt REQUIRED)
  target_link_libraries(saddle_fmt INTERFACE fmt::fmt)
endif()

# CUDA: the codec's kernels, device placement and the NCCL transport. AUTO builds them when
# LibTorch has CUDA (the wheel) and nvcc is found; everything else runs without them.
set(SADDLE_CUDA AUTO CACHE STRING "Build the CUDA kernels and NCCL transport: AUTO, ON or OFF")
set_property(CACHE SADDLE_CUDA PROPERTY STRINGS AUTO ON OFF)
set(SADDLE_WITH_CUDA OFF)
set(SADDLE_WITH_NCCL OFF)
if(NOT SADDLE_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(TARGET torch_cuda AND CMAKE_CUDA_COMPILER)
    set(SADDLE_WITH_CUDA ON)
  elseif(SADDLE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SADDLE_CUDA=ON needs a LibTorch with CUDA (the PyPI wheel) and nvcc; "
                        "found LibTorch ${Torch_VERSION} ${SADDLE_TORCH_PREFIX}, nvcc "
                        "'${CMAKE_CUDA_COMPILER}'")
  endif()
endif()
if(SADDLE_WITH_CUDA)
  # LibTorch's cuda.cmake sets CMAKE_CUDA_ARCHITECTURES to OFF (it uses TORCH_CUDA_ARCH_LIST).
  if(NOT CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "OFF")
    # The same architectures as LibTorch's kernels: "8.0;9.0" -> "80;90".
    set(_archs "$ENV{TORCH_CUDA_ARCH_LIST}")
    if(DEFINED TORCH_CUDA_ARCH_LIST)
      set(_archs "${TORCH_CUDA_ARCH_LIST}")
    endif()
    string(REPLACE " " ";" _archs "${_archs}")
    string(REPLACE "." "" _archs "${_archs}")
    string(REPLACE "+PTX" "" _archs "${_archs}")
    set(CMAKE_CUDA_ARCHITECTURES ${_archs})
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  # NCCL: the wheel's own (the one libtorch_cuda loads), else the toolkit's.
  get_filename_component(_site "${SADDLE_TORCH_PREFIX}/.." ABSOLUTE)
  find_path(SADDLE_NCCL_INCLUDE_DIR nccl.h
            HINTS "${_site}/nvidia/nccl/include" ${CUDAToolkit_INCLUDE_DIRS})
  find_library(SADDLE_NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR
               HINTS "${_site}/nvidia/nccl/lib" ${CUDAToolkit_LIBRARY_DIR})
  if(SADDLE_NCCL_INCLUDE_DIR AND SADDLE_NCCL_LIBRARY)
    set(SADDLE_WITH_NCCL ON)
  endif()
  message(STATUS "saddle: CUDA kernels for architectures ${CMAKE_CUDA_ARCHITECTURES}; "
                 "NCCL: ${SADDLE_NCCL_LIBRARY}")
endif()
