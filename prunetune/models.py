"""Loading and saving causal LMs: the device, hub pinning, and clear errors for what is not a causal LM."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from prunetune.config import PrunetuneError

META_FILE = "prunetune.json"  # our record beside each model dir: where it came from, what was done to it
# model.dtype (optional; absent = auto): the dtype every stage loads the models in. The base stage records a
# non-auto choice in the model's meta, which every derived model inherits, so no other stage needs the param.
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that has it, float32 on the CPU (CPU bf16 matmuls are slow and inexact)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# What to do about a model folder that is there but broken.
RESTORE = (
    "restore or re-create the folder (dvc checkout or dvc repro for a pipeline output, a fresh download otherwise)"
)


def is_hub_id(name: str) -> bool:
    return not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/"))


def missing_local_dir(name: str) -> str | None:
    """Why `name`, which does not exist, is a local path and not a hub id ('owner/name'), or None when it may be one."""
    if Path(name).exists():
        return None
    if name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") != 1:
        return "it is written as a path"
    first = name.split("/", 1)[0]
    if Path(first).is_dir():
        return f"{first}/ is a directory here, so it is read as a path, not a hub id"
    return None


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def check_causal_lm_dir(path: str | Path, param: str = "model") -> None:
    """Fail fast, naming the param, when a directory holds no Hugging Face causal LM."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise PrunetuneError(f"{param}: {path} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except Exception as err:  # bad JSON, a wrongly typed field ("hidden_size": "big"), an unknown model type
        raise PrunetuneError(f"{param}: {path}/config.json cannot be read ({_first_line(err)}); {RESTORE}") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise PrunetuneError(
            f"{param}: {path} holds a '{config.model_type}' model, which is not a causal LM "
            "(AutoModelForCausalLM cannot load it)"
        )
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise PrunetuneError(f"{param}: {path} has no *.safetensors weights (only safetensors are loaded)")
    for file in weights:  # the header is read whole: a truncated file fails here, before any weight is loaded
        try:
            with safe_open(file, framework="pt"):
                pass
        except Exception as err:
            raise PrunetuneError(f"{param}: {file} is damaged ({_first_line(err)}); {RESTORE}") from None


def resolve_hub_snapshot(name: str, revision: str | None) -> tuple[Path, str]:
    """Download (or find in the local HF cache) a hub model; return its directory and the commit it resolved to."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.jinja"]
    try:
        path = Path(snapshot_download(name, revision=revision, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise PrunetuneError(
            f"model.name: '{name}' is not in the local Hugging Face cache and the hub cannot be reached; "
            f"run `hf download {name}` where there is a network (or set HF_HOME to a cache that has it), "
            "or set model.name to a local model directory"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise PrunetuneError(
            f"model.name: cannot fetch '{name}' from the hub ({err.__class__.__name__}: {err})"
        ) from None
    return path, path.name  # snapshot directories are named by commit hash


def load_model(
    path: str | Path,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    param: str = "model",
) -> tuple[PreTrainedModel, Any]:
    """A causal LM and its tokenizer from a local directory, safetensors only, no remote code; in `dtype`, else the
    dtype its meta records (model.dtype at the base stage), else pick_dtype's."""
    check_causal_lm_dir(path, param)
    device = device or pick_device()
    if not any(path.glob("tokenizer*")):
        raise PrunetuneError(
            f"{param}: {path} has no tokenizer files (tokenizer.json, tokenizer_config.json); {RESTORE}"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as err:  # broken tokenizer files
        raise PrunetuneError(
            f"{param}: {path}: the tokenizer cannot be loaded ({_first_line(err)}); {RESTORE}"
        ) from None
    dtype = dtype or DTYPES.get(read_meta(path).get("dtype", "auto"))
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=dtype or pick_dtype(device),
            trust_remote_code=False,
            use_safetensors=True,
            ignore_mismatched_sizes=True,  # reported below as one line, not as a table and a traceback
            output_loading_info=True,
        )
    except Exception as err:  # a shape in config.json that the weights do not have
        raise PrunetuneError(
            f"{param}: {path}: config.json does not match the weights ({_first_line(err)}); {RESTORE}"
        ) from None
    missing = sorted(info.get("missing_keys") or []) + [str(m[0]) for m in info.get("mismatched_keys") or []]
    if missing:  # from_pretrained would initialize these at random and carry on
        raise PrunetuneError(
            f"{param}: {path}: config.json does not match the weights ({len(missing)} weights missing or of another "
            f"shape, e.g. {missing[0]}); {RESTORE}"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


@contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """A fresh temporary sibling to write into, swapped in for out_dir at the end: never written in place."""
    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    yield tmp_dir
    if out_dir.is_symlink() or out_dir.is_file():
        out_dir.unlink()
    elif out_dir.exists():
        shutil.rmtree(out_dir)
    tmp_dir.rename(out_dir)


def write_model_files(model: PreTrainedModel, tokenizer: Any, directory: Path, meta: dict[str, Any]) -> None:
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_model(model: PreTrainedModel, tokenizer: Any, out_dir: str | Path, meta: dict[str, Any]) -> None:
    with staged_dir(out_dir) as directory:
        write_model_files(model, tokenizer, directory, meta)


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """The folder's prunetune.json ({} without one); a damaged one is one line naming it."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise PrunetuneError(f"{path}: damaged ({err}); rerun the stage that wrote {model_dir}") from None
    if not isinstance(meta, dict):
        raise PrunetuneError(f"{path}: a {type(meta).__name__}, not an object; rerun the stage that wrote {model_dir}")
    return meta


def count_parameters(model: torch.nn.Module, only: set[int] | None = None) -> int:
    """Unique parameters (tied embedding and head counted once); with `only`, those whose id() is in it."""
    unique = {id(p): p for p in model.parameters()}
    return sum(p.numel() for key, p in unique.items() if only is None or key in only)
