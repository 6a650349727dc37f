"""Generate the SDK's gRPC stubs from api_proto/*.proto into gpu_quant/_proto/.

Run by the setuptools build (setup.py) and by `make protos`; standalone on purpose (it needs only
grpc_tools, so it runs in pip's isolated build environment without importing the SDK):

    python gpu_quant/_proto_build.py [repo_root]

The .proto files are compiled under their server names (``api_proto/jobs.proto``), so the
descriptors are byte-identical to the server's and both copies can live in one process; only the
generated Python imports are rewritten from ``from api_proto import x_pb2`` to relative imports.
"""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

PROTO_PACKAGE = "api_proto"
_SERVER_IMPORT = re.compile(rf"^from {PROTO_PACKAGE} import (\w+_pb2)", re.MULTILINE)


def proto_files(repo_root: Path) -> list[Path]:
    return sorted((repo_root / PROTO_PACKAGE).glob("*.proto"))


def build_stubs(repo_root: Path, target: Path) -> list[Path]:
    """Compile every proto of repo_root/api_proto into target (a package directory)."""
    from grpc_tools import protoc  # build-time dependency only
    import grpc_tools

    protos = proto_files(repo_root)
    if not protos:
        raise RuntimeError(f"no .proto files under {repo_root / PROTO_PACKAGE}")
    include = Path(grpc_tools.__file__).parent / "_proto"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        relative = [str(path.relative_to(repo_root)) for path in protos]
        args = ["protoc", f"-I{repo_root}", f"-I{include}", f"--python_out={scratch}",
                f"--grpc_python_out={scratch}", f"--pyi_out={scratch}", *relative]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {relative}")
        for generated in sorted((Path(scratch) / PROTO_PACKAGE).glob("*_pb2*.py*")):
            text = _SERVER_IMPORT.sub(r"from . import \1", generated.read_text(encoding="utf-8"))
            destination = target / generated.name
            destination.write_text(text, encoding="utf-8")
            written.append(destination)
    init = target / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs (gpu_quant/_proto_build.py); not committed."""\n', encoding="utf-8")
    return written


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    files = build_stubs(root, root / "gpu_quant" / "_proto")
    print(f"gpu_quant/_proto: {len(files)} generated files")
