"""Regenerates the committed gRPC code in hybrid/v1 from protos/hybrid/v1/*.proto.

    python scripts/generate_protos.py          # rewrite hybrid/v1/*_pb2*.py(i)
    python scripts/generate_protos.py --check  # exit 1 if the committed code is stale

The generated files are never edited by hand: change the .proto and re-run this.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("hybrid") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Runs protoc into out_root and returns the generated files, relative to it."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {protos}")
    return sorted(
        p.relative_to(out_root) for p in (out_root / PACKAGE_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )


def committed_files() -> list[Path]:
    return sorted(p.relative_to(ROOT) for p in (ROOT / PACKAGE_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed code instead of writing it")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        fresh = generate(fresh_root)
        if check:
            stale = [
                str(p)
                for p in fresh
                if not (ROOT / p).exists() or not filecmp.cmp(fresh_root / p, ROOT / p, shallow=False)
            ]
            extra = [str(p) for p in committed_files() if p not in fresh]
            if stale or extra:
                print(
                    f"generated code is stale: {stale + extra}; run python scripts/generate_protos.py", file=sys.stderr
                )
                return 1
            print("generated code is up to date")
            return 0
        for old in committed_files():
            (ROOT / old).unlink()
        for rel in fresh:
            (ROOT / rel).write_bytes((fresh_root / rel).read_bytes())
            print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
