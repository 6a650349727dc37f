"""Every message, enum, enum value, field, service and RPC in api_proto/ carries a comment."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

PROTOS = sorted((Path(__file__).resolve().parents[2] / "api_proto").glob("*.proto"))
DECLARATION = re.compile(r"^\s*(message|enum|service|rpc)\s+\w+|^\s*(repeated\s+|map<[^>]+>\s+)?[\w.]+\s+\w+\s*=\s*\d+\s*;"
                         r"|^\s*[A-Z_0-9]+\s*=\s*\d+\s*;")


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_every_declaration_is_commented(proto):
    lines = proto.read_text().splitlines()
    missing = []
    for number, line in enumerate(lines):
        if DECLARATION.match(line) and not lines[number - 1].strip().startswith("//"):
            missing.append(f"{proto.name}:{number + 1}: {line.strip()}")
    assert not missing, "uncommented declarations:\n" + "\n".join(missing)
