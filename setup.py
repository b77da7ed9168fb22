"""Builds privcity._core, the C++ core reached through pybind11.

ISA-specific code is selected per source file (``#pragma GCC target`` at the top of each
kernel file) and dispatched at run time, so the wheel runs on any x86-64 CPU.
``PRIVCITY_NATIVE=1`` adds ``-march=native`` for local experiments only.
"""
import os
import sys
from glob import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import find_packages, setup

ParallelCompile("PRIVCITY_BUILD_JOBS", default=0).install()

# -ffp-contract=off and no reassociation: the noise kernels run the same IEEE operations on
# every ISA, so seeded streams are bit-identical across paths. -fno-math-errno lets sqrt inline.
extra = ["-O3", "-fvisibility=hidden", "-fno-strict-aliasing", "-ffp-contract=off", "-fno-math-errno"]
if os.environ.get("PRIVCITY_NATIVE") == "1":
    extra.append("-march=native")
if sys.platform == "darwin":
    extra.append("-Wno-unused-command-line-argument")

ext = Pybind11Extension(
    "privcity._core",
    sorted(glob("cpp/src/*.cpp")) + ["bindings/module.cpp"],
    include_dirs=["cpp/include"],
    depends=sorted(glob("cpp/include/privcity/*.h") + glob("cpp/src/*.h") + glob("cpp/src/*.inc")),
    extra_compile_args=extra,
    cxx_std=17,
)

setup(
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    package_dir={"": "pycore"},
    packages=find_packages(where="pycore"),
    package_data={"privcity": ["py.typed", "_core.pyi"]},
)
