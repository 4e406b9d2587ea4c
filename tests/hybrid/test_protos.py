from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_protos():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_router_and_replicas_share_one_inference_service():
    from hybrid.v1 import inference_pb2, router_admin_pb2

    inference = inference_pb2.DESCRIPTOR.services_by_name["Inference"]
    assert inference.methods_by_name["Generate"].server_streaming
    admin = router_admin_pb2.DESCRIPTOR.services_by_name["RouterAdmin"]
    assert set(admin.methods_by_name) == {"ListReplicas", "Explain"}
