"""`prunetune study CONFIG`: a configuration (configs/llama-3.2-1b.yaml) run as a DVC experiment.

Every value of the config is handed to `dvc exp run -S` (Hydra's override syntax, `++key=value`: set, or add
when params.yaml lacks the key), and the experiment runs in a temporary copy (`--temp`), so params.yaml and the
workspace are never touched: `git status` stays clean, and the study shows up in `dvc exp show` and
`dvc metrics diff main NAME` beside the default. Before DVC starts, two things the study cannot do without are
checked, each failing in one line: the corpus the config names, and (offline) the model weights in the HF cache.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

from prunetune.config import PrunetuneError
from prunetune.params import SECTIONS, check_sections

COLLECT_HINT = "prunetune collect --limit 2000 --out {source}"


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PrunetuneError(f"{path}: study config not found (e.g. configs/llama-3.2-1b.yaml)")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PrunetuneError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict) or "model" not in config:
        raise PrunetuneError(f"{path}: expected params.yaml's sections (data, model, ...)")
    return config


def flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) for every leaf; lists are values, a mapping is descended (an empty one is a value)."""
    leaves: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if not isinstance(key, str) or not key or "." in key or "=" in key:
            raise PrunetuneError(f"{prefix}{key!r}: a param name must be a non-empty string without '.' or '='")
        if isinstance(value, dict) and value:
            leaves += flatten(value, f"{prefix}{key}.")
        else:
            leaves.append((prefix + key, value))
    return leaves


def hydra_value(value: Any, key: str) -> str:
    """value in Hydra's override grammar (what `dvc exp run -S` parses): null, true/false, numbers, quoted strings,
    [lists] and {mappings}; the same type comes back out."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return {True: "nan"}.get(math.isnan(value), "inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        if "\\" in value or ("'" in value and '"' in value):
            raise PrunetuneError(f"{key}: {value!r} cannot be passed to dvc exp run -S (a backslash, or both quotes)")
        quote = "'" if "'" not in value else '"'
        return f"{quote}{value}{quote}"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(item, key) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v, key)}" for k, v in value.items()) + "}"
    raise PrunetuneError(f"{key}: a {type(value).__name__} value cannot be passed to dvc exp run -S")


def set_param_args(config: dict[str, Any]) -> list[str]:
    """`-S ++key=value` for every leaf of the config."""
    args: list[str] = []
    for key, value in flatten(config):
        args += ["-S", f"++{key}={hydra_value(value, key)}"]
    return args


def check_corpus(config: dict[str, Any], config_path: str | Path) -> Path | None:
    """The corpus file the config names (None for data.hub_dataset); one line naming it and the collect command
    when it is missing."""
    data = config["data"]
    if data.get("hub_dataset"):
        return None
    source = Path(str(data.get("source")))
    if not source.is_file():
        raise PrunetuneError(
            f"{source}: corpus not found (data.source in {config_path}); collect it first: "
            + COLLECT_HINT.format(source=source)
        )
    return source


def _cached_snapshot(name: str, revision: str | None) -> bool:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(name, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return False
    return any(path.glob("*.safetensors"))


def check_model(config: dict[str, Any]) -> None:
    """A hub model must be in the local HF cache unless the hub can be reached: one line when neither holds."""
    from prunetune.corpus import _hub_offline_mode, _hub_unreachable
    from prunetune.models import is_hub_id

    model = config.get("model") or {}
    name = model.get("name")
    if not isinstance(name, str) or name == "tiny" or not is_hub_id(name):
        return
    if _cached_snapshot(name, model.get("revision")):
        return
    reason = "HF_HUB_OFFLINE is set" if _hub_offline_mode() else _hub_unreachable()
    if reason:
        raise PrunetuneError(
            f"model.name: '{name}' is not in the local Hugging Face cache and the hub cannot be reached "
            f"(offline: {reason}); run `hf download {name}` where there is a network, then the study again"
        )


def copy_paths(source: Path | None, root: Path) -> list[str]:
    """What `dvc exp run --temp` must copy for an untracked corpus: the highest directory above it holding no
    tracked file (DVC cannot create a missing parent), or the file itself; nothing for a tracked file."""
    if source is None:
        return []
    if not source.resolve().is_relative_to(root.resolve()):
        raise PrunetuneError(
            f"data.source: {source} is outside the repository ({root.resolve()}); the experiment's copy can only "
            "track a corpus inside it: move or copy it under data/ and point data.source there"
        )
    relative = source.resolve().relative_to(root.resolve())

    def tracked(path: Path) -> bool:
        listed = subprocess.run(["git", "ls-files", "--", str(path)], cwd=root, capture_output=True, text=True)
        return bool(listed.stdout.strip())

    if tracked(relative):
        return []
    top = relative
    while top.parent != Path(".") and not tracked(top.parent):
        top = top.parent
    return [str(top)]


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The config with `section.key=value` overrides (values parsed as YAML) set; a key the config lacks is refused."""
    for override in overrides:
        dotted, sep, text = override.partition("=")
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not sep or not isinstance(node, dict) or leaf not in node:
            raise PrunetuneError(f"study -S {override}: expected SECTION.KEY=VALUE naming a key of the config")
        node[leaf] = yaml.safe_load(text)
    return config


def check_config(config: dict[str, Any], file: str) -> None:
    """The config (with its overrides) checked as params.yaml is: known sections, every key typed and ranged."""
    check_sections(config, file)
    missing = [name for name in SECTIONS if name not in config]
    if missing:
        raise PrunetuneError(f"{file}: section(s) {', '.join(missing)} missing")
    for name, cls in SECTIONS.items():
        cls.parse(config[name], file)


def study_command(
    config_path: str | Path,
    name: str | None = None,
    root: Path = Path("."),
    force: bool = False,
    overrides: list[str] | None = None,
) -> list[str]:
    """The checked `dvc exp run` command for a config (raises PrunetuneError first when it cannot run)."""
    config = apply_overrides(load_config(config_path), overrides or [])
    check_config(config, str(config_path))  # every section typed and ranged, as each stage will check it
    source = check_corpus(config, config_path)
    check_model(config)
    command = ["dvc", "exp", "run", "--temp", "-n", name or Path(config_path).stem]
    for path in copy_paths(source, root):
        command += ["-C", path]
    if force:
        command.append("--force")
    return command + set_param_args(config)
