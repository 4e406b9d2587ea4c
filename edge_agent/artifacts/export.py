"""``hybrid export``: the full model becomes a quality-gated edge artifact.

1. optimum exports the decoder with KV cache to ONNX (fp32), once per source model.
2. The tied output projection is untied into its own initializer, so that it can be quantized:
   optimum leaves it as Transpose(embedding), which no weight quantizer touches, and at 49152x576
   it is the largest matrix read at every decode step.
3. The model is converted to the asked precision (``quantize``: weight-only block quantization). A lean
   recipe skips steps 1 to 3: its graph is written straight from the checkpoint (``lean_graph``).
4. The artifact passes the quality gate against the full PyTorch model (``quality``). An artifact more
   than 3% worse in perplexity is refused unless forced, and then labelled.
5. With a signing key, the manifest of the placed artifact is signed (``signing``): nodes that trust
   the key's public half accept it, and nothing else.

Every stage is cached by content hash under the cache folder, and nothing already built is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edge_agent import defaults
from edge_agent.artifacts.lean_graph import LEAN_GRAPH_VERSION
from edge_agent.artifacts.manifest import (
    MODEL_FILE,
    Manifest,
    hash_files,
    read_manifest,
    verify_artifact,
    write_manifest,
)
from edge_agent.artifacts.quality import (
    ReferenceQuality,
    evaluation_text,
    gate_failure,
    measure_quality,
    reference_quality,
)
from edge_agent.artifacts.quantize import (
    AUTO_ORDER,
    PRECISION_CHOICES,
    RECIPE_VERSION,
    RECIPES,
    LeanRecipe,
    PrecisionRecipe,
    build_lean,
    quantize,
)
from edge_agent.artifacts.signing import load_private_key, sign_artifact
from hybrid import __version__, constants
from hybrid.errors import InvalidRequestError, QualityGateError
from hybrid.models.registry import ResolvedModel, resolve_model

# Input added to the exported graph: how many trailing positions get logits.
LOGITS_TO_KEEP = "num_logits_to_keep"
# Tokenizer and config files that travel with the ONNX model; optimum also writes tokenizer.model,
# which for a GGUF-converted model is a 98 MB copy of the GGUF that the fast tokenizer never reads.
_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def _quiet_libraries() -> None:
    for name in ("optimum", "transformers", "onnxruntime", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _untie_output_projection(onnx_model) -> bool:
    """Replaces lm_head's MatMul(x, Transpose(embedding)) with MatMul(x, <own initializer>)."""
    from onnx import numpy_helper

    graph = onnx_model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in list(graph.node):
        if node.op_type != "Transpose" or node.input[0] not in initializers:
            continue
        if not all(c.op_type == "MatMul" and c.input[1] == node.output[0] for c in consumers.get(node.output[0], [])):
            continue
        weight = numpy_helper.to_array(initializers[node.input[0]])
        graph.node.remove(node)
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), name=node.output[0]))
        return True
    return False


def _add_logits_to_keep(onnx_model) -> bool:
    """Adds an input ``num_logits_to_keep`` ([1], int64): the output projection runs on the last K positions only.

    A prefill of S tokens otherwise computes and copies S x vocab logits to use one row; serving passes
    K = 1, the quality check passes K = S. The slice changes no value, only which rows are computed.
    """
    from onnx import TensorProto, helper

    graph = onnx_model.graph
    projection = next((n for n in graph.node if n.op_type == "MatMul" and "logits" in n.output), None)
    if projection is None or any(i.name == LOGITS_TO_KEEP for i in graph.input):
        return False
    hidden = projection.input[0]
    sliced = hidden + "_last_k"
    graph.input.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, [1]))
    graph.initializer.extend(
        [
            helper.make_tensor("logits_slice_end", TensorProto.INT64, [1], [2**62]),
            helper.make_tensor("logits_slice_axis", TensorProto.INT64, [1], [1]),
        ]
    )
    start = helper.make_node("Neg", [LOGITS_TO_KEEP], ["logits_slice_start"], name="logits_to_keep/Neg")
    slice_node = helper.make_node(
        "Slice",
        [hidden, "logits_slice_start", "logits_slice_end", "logits_slice_axis"],
        [sliced],
        name="logits_to_keep/Slice",
    )
    position = list(graph.node).index(projection)
    graph.node.insert(position, slice_node)
    graph.node.insert(position, start)
    projection.input[0] = sliced
    return True


def base_onnx(model: ResolvedModel, cache_dir: Path) -> Path:
    """The fp32 ONNX export with KV cache and an untied output projection, cached per source model."""
    target = cache_dir / "onnx" / f"{model.name}-{model.fingerprint[:16]}-r{RECIPE_VERSION}"
    if (target / MODEL_FILE).is_file():
        return target
    import onnx
    from optimum.exporters.onnx import main_export

    _quiet_libraries()
    raw = target.with_name(target.name + f".raw-{os.getpid()}")
    shutil.rmtree(raw, ignore_errors=True)
    main_export(str(model.hf_dir), output=raw, task="text-generation-with-past", do_validation=False)
    onnx_model = onnx.load(str(raw / MODEL_FILE))
    _untie_output_projection(onnx_model)
    _add_logits_to_keep(onnx_model)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    onnx.save(onnx_model, str(partial / MODEL_FILE))
    for name in _SIDE_FILES:
        if (raw / name).is_file():
            shutil.copy2(raw / name, partial / name)
    shutil.rmtree(raw, ignore_errors=True)
    partial.rename(target)
    return target


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def artifact_key(model: ResolvedModel, recipe: PrecisionRecipe | LeanRecipe) -> str:
    content = {"source": model.fingerprint, "recipe": asdict(recipe), "version": RECIPE_VERSION}
    if isinstance(recipe, LeanRecipe):
        content["lean_graph_version"] = LEAN_GRAPH_VERSION
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _write_model(model: ResolvedModel, recipe: PrecisionRecipe | LeanRecipe, cache_dir: Path, partial: Path) -> Path:
    """Writes model.onnx and the side files into ``partial``; returns the folder the side files came from."""
    if isinstance(recipe, LeanRecipe):
        source = Path(model.hf_dir)
        build_lean(source, recipe, partial)
    else:
        source = base_onnx(model, cache_dir)
        quantize(source, recipe, partial)
    for name in _SIDE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, partial / name)
    return source


def _build(
    model: ResolvedModel,
    recipe: PrecisionRecipe | LeanRecipe,
    cache_dir: Path,
    reference: ReferenceQuality,
    max_increase: float,
) -> Path:
    """Builds (or finds) the artifact for one recipe in the cache. Its manifest records whether it passed."""
    key = artifact_key(model, recipe)
    target = cache_dir / "artifacts" / f"{model.name}-{recipe.name}-{key[:16]}"
    if (target / "manifest.json").is_file():
        return target
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    source = _write_model(model, recipe, cache_dir, partial)
    lean = isinstance(recipe, LeanRecipe)
    quality = measure_quality(partial, reference, max_increase, lean=lean)
    config = json.loads((source / "config.json").read_text())
    exporter = "hybrid lean decoder" if lean else "optimum text-generation-with-past"
    manifest = Manifest(
        model=model.name,
        source_fingerprint=model.fingerprint,
        precision=recipe.name,
        full_precision=recipe.full_precision,
        opset=_opset(partial / MODEL_FILE),
        recipe={
            **asdict(recipe),
            "recipe_version": RECIPE_VERSION,
            "exporter": exporter,
            **({"lean_graph_version": LEAN_GRAPH_VERSION} if lean else {}),
        },
        context_window=int(config.get("max_position_embeddings", defaults.EDGE_MAX_CONTEXT_TOKENS)),
        quality=quality,
        files=hash_files(partial),
        created_by=f"hybrid {__version__}",
    )
    write_manifest(partial, manifest)
    partial.rename(target)
    return target


def _copy_artifact(source: Path, out: Path) -> None:
    """Places the artifact at ``out`` (hard links where possible) so that it appears whole or not at all."""
    out = out.resolve()
    if out.exists():
        if (out / "manifest.json").is_file() and hash_files(out) == hash_files(source):
            return
        if any(out.iterdir()):
            raise InvalidRequestError(f"{out} already exists and holds something else; choose an empty or new --out")
        out.rmdir()
    partial = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for path in source.iterdir():
        try:
            os.link(path, partial / path.name)
        except OSError:
            shutil.copy2(path, partial / path.name)
    partial.rename(out)


def measure_decode_speed(folder: Path, prompt_tokens: int = 32, steps: int = 24, lean: bool = False) -> float:
    """Greedy batch-1 decode tokens/s of an artifact on this machine, after a short warm-up."""
    import time

    from edge_agent.runtime import OnnxCausalLM
    from hybrid.models.registry import load_tokenizer

    ids = load_tokenizer(folder)(evaluation_text()).input_ids[:prompt_tokens]
    if lean:
        return _lean_decode_speed(folder, ids, steps)
    runtime = OnnxCausalLM(folder / MODEL_FILE)
    logits, cache = runtime.forward(
        np.array([ids]), np.ones((1, len(ids)), np.int64), np.arange(len(ids))[None, :], runtime.empty_cache(1)
    )
    started = 0.0
    for step in range(steps + 2):
        if step == 2:
            started = time.perf_counter()
        length = cache.length
        logits, cache = runtime.forward(
            logits.argmax(-1)[:, None], np.ones((1, length + 1), np.int64), np.array([[length]]), cache
        )
    return steps / (time.perf_counter() - started)


def _lean_decode_speed(folder: Path, ids: list[int], steps: int) -> float:
    import time

    from edge_agent.lean_runtime import LeanDecoder

    runtime = LeanDecoder(folder / MODEL_FILE, max_slots=1, max_context=len(ids) + steps + 2)
    token = int(runtime.prefill(0, ids).argmax())
    started = 0.0
    for step in range(steps + 2):
        if step == 2:
            started = time.perf_counter()
        token = int(runtime.decode([0], [token], [len(ids) + step])[0].argmax())
    return steps / (time.perf_counter() - started)


def _auto_record(model: ResolvedModel, cache_dir: Path, max_increase: float) -> Path:
    """Where auto's choice is remembered: per source model, recipes, candidates and gate."""
    candidates = hashlib.sha256(
        json.dumps({name: asdict(RECIPES[name]) for name in AUTO_ORDER}, sort_keys=True).encode()
    ).hexdigest()[:8]
    name = f"auto-{model.fingerprint[:16]}-r{RECIPE_VERSION}-l{LEAN_GRAPH_VERSION}-{candidates}-gate{max_increase}.json"
    return cache_dir / "quality" / name


def _choose_fastest(
    model: ResolvedModel, cache_dir: Path, reference: ReferenceQuality, max_increase: float, say
) -> Path:
    """Builds every AUTO_ORDER recipe, drops those that fail the gate, keeps the fastest by measurement.

    The choice is cached with its measurements, so that a re-run neither rebuilds nor re-measures
    (and cannot flip between two close candidates on a noisy machine).
    """
    record = _auto_record(model, cache_dir, max_increase)
    if record.is_file():
        chosen = json.loads(record.read_text())["chosen"]
        return _build(model, RECIPES[chosen], cache_dir, reference, max_increase)
    speeds: dict[str, float] = {}
    rejected: dict[str, str] = {}
    folders: dict[str, Path] = {}
    for name in AUTO_ORDER:
        recipe = RECIPES[name]
        say(f"building {recipe.name} (ONNX export, quantization, quality check)")
        folders[name] = _build(model, recipe, cache_dir, reference, max_increase)
        failure = gate_failure(read_manifest(folders[name]), max_increase)
        if failure:
            rejected[name] = failure
            say(f"skipped {failure}")
            continue
        speeds[name] = measure_decode_speed(folders[name], lean=isinstance(recipe, LeanRecipe))
        say(f"{recipe.name} passes the gate; {speeds[name]:.1f} tokens/s at batch 1 on this machine")
    if not speeds:
        raise QualityGateError("no precision passed the quality gate: " + "; ".join(rejected.values()))
    chosen = max(speeds, key=speeds.__getitem__)
    say(f"auto chose {RECIPES[chosen].name}, the fastest that passes the gate")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"chosen": chosen, "tokens_per_second": speeds, "rejected": rejected}, indent=2))
    return folders[chosen]


def _build_gated(
    model: ResolvedModel,
    recipe: PrecisionRecipe | LeanRecipe,
    cache_dir: Path,
    reference: ReferenceQuality,
    max_increase: float,
    force: bool,
    say,
) -> Path:
    """The artifact of an explicitly chosen recipe: refused when it fails the gate, unless ``force`` labels it."""
    say(f"building {recipe.name} (ONNX export, quantization, quality check)")
    folder = _build(model, recipe, cache_dir, reference, max_increase)
    manifest = read_manifest(folder)
    failure = gate_failure(manifest, max_increase)
    if failure is None:
        return folder
    if not force:
        raise QualityGateError(
            f"{failure}: refused. Use a precision with more bits (e.g. --precision int8), or --force to "
            "ship it anyway, labelled as failing the gate"
        )
    forced = folder.with_name(folder.name + "-forced")
    if not forced.exists():
        shutil.copytree(folder, forced)
        assert manifest.quality is not None
        manifest.quality = manifest.quality.model_copy(
            update={"passed": False, "forced": True, "max_perplexity_increase": max_increase}
        )
        write_manifest(forced, manifest)
    return forced


def export_artifact(
    model: str = constants.DEFAULT_MODEL,
    precision: str = "auto",
    out: Path | None = None,
    force: bool = False,
    cache_dir: Path | None = None,
    max_perplexity_increase: float = defaults.MAX_PERPLEXITY_INCREASE,
    progress=None,
    sign_key: Path | None = None,
) -> tuple[Path, Manifest]:
    """Builds the edge artifact and returns its folder and manifest.

    ``precision`` is one of PRECISION_CHOICES. ``auto`` keeps the precision that decodes fastest on
    this machine among those that pass the gate. An explicit precision that fails the gate raises
    QualityGateError unless ``force``; a forced artifact says so in its manifest. ``sign_key``: a private key
    from `hybrid artifacts keygen`; the artifact is signed where it is placed (``out``, else the cache).
    """
    if precision not in PRECISION_CHOICES:
        raise InvalidRequestError(f"unknown precision {precision!r}: use one of {', '.join(PRECISION_CHOICES)}")
    if sign_key is not None:
        load_private_key(sign_key)  # a bad key is refused before minutes of export, not after
    cache_dir = Path(cache_dir or constants.CACHE_DIR)
    say = progress or (lambda message: None)
    say(f"resolving model {model}")
    resolved = resolve_model(model, cache_dir)
    _quiet_libraries()
    say("measuring the full model on the evaluation text")
    reference = reference_quality(resolved, cache_dir)
    if precision == "auto":
        folder = _choose_fastest(resolved, cache_dir, reference, max_perplexity_increase, say)
    else:
        folder = _build_gated(resolved, RECIPES[precision], cache_dir, reference, max_perplexity_increase, force, say)
    manifest = verify_artifact(folder)
    if out is not None:
        _copy_artifact(folder, Path(out))
        folder = Path(out).resolve()
    if sign_key is not None:
        say(f"signing the manifest with {sign_key}")
        sign_artifact(folder, sign_key)
    return folder, manifest
