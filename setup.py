"""Build step of the `gpu-quant` client package (metadata lives in pyproject.toml): generate the
gRPC stubs from api_proto/*.proto into the wheel's gpu_quant/_proto/ (gpu_quant/_proto_build.py)."""
import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _proto_builder():
    # loaded by path: importing the gpu_quant package would need its runtime dependencies
    spec = importlib.util.spec_from_file_location("_gq_proto_build", ROOT / "gpu_quant" / "_proto_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        _proto_builder().build_stubs(ROOT, Path(self.build_lib) / "gpu_quant" / "_proto")


setup(cmdclass={"build_py": BuildPyWithStubs})
