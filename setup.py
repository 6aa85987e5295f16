"""The package build compiles the C runtime into the host library the Python
binding loads (tflm_training/host_build.py), for every gradient width. The
metadata is in setup.cfg."""

import importlib.util
import pathlib

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HOST_BUILD = pathlib.Path(__file__).resolve().parent / "tflm_training" / "host_build.py"


def _host_build():
    # By path: importing the package would need its dependencies, which the
    # build environment does not have.
    spec = importlib.util.spec_from_file_location("tflm_training_host_build", HOST_BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithHostLibrary(build_py):
    """build_py, then the host library: into the source tree for an editable
    install (where the package is imported from), else into the wheel."""

    def run(self):
        super().run()
        host_build = _host_build()
        if getattr(self, "editable_mode", False):
            build_dir = host_build.BUILD_DIR
        else:
            build_dir = pathlib.Path(self.build_lib) / "tflm_training" / "_build"
        try:
            host_build.build_host_if_stale(build_dir=build_dir)
        except host_build.BuildError as error:
            raise SystemExit(f"error: {error}") from None
        if not getattr(self, "editable_mode", False):
            (build_dir / host_build.LOCK_NAME).unlink(missing_ok=True)


class BinaryDistribution(Distribution):
    """The wheel holds a compiled library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithHostLibrary}, distclass=BinaryDistribution)
