"""The one-line error every stage ends with on bad input, and params.yaml read with duplicate keys refused.

The sections' types and ranges are in params.py."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"


class PrunetuneError(Exception):
    """Bad input or params: the message names the file, item or param and what to do."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping (plain YAML lets the last one silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: a list or mapping as a key (unhashable)
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise PrunetuneError(f"{self.name}:{line}: a {kind} as a key; keys are plain names")
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise PrunetuneError(
                    f"{self.name}:{line}: key {key!r} is written twice (first on line {seen[key]}); YAML would "
                    "silently keep the last: keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    """A YAML file parsed with duplicate keys refused; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise PrunetuneError(f"{path}: is a directory, not a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise PrunetuneError(f"{path}: not valid UTF-8 (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise PrunetuneError(f"{path}: cannot be read ({err.strerror or err})") from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        where = "run the stage from the repository root" if path == Path(PARAMS_FILE) else "check the path"
        raise PrunetuneError(f"{path}: not found; {where}")
    try:
        params = load_yaml(path)
    except yaml.YAMLError as err:
        raise PrunetuneError(f"{path}: not valid YAML ({err.__class__.__name__}: {err})") from None
    if not isinstance(params, dict):
        raise PrunetuneError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def require(condition: bool, param: str, problem: str) -> None:
    """Fail with a message naming the param, before any work is spent."""
    if not condition:
        raise PrunetuneError(f"params.yaml: {param} {problem}")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; bad input ends in one line on stderr and exit status 1, Ctrl-C in one line and 130.

    With PRUNETUNE_VOCAB_GUARD set, main runs under prunetune.memguard's check on full-vocabulary tensors; with
    PRUNETUNE_PEAK_LOG set, the process's peak GPU memory (null without one) is appended to that file (the smoke)."""
    # The stage's imports (torch, transformers: millions of objects) live until exit: the garbage collector need not
    # walk them again, during the run or in its final collection at exit (0.6 s of every stage process).
    gc.freeze()
    try:
        if os.environ.get("PRUNETUNE_VOCAB_GUARD"):
            from prunetune.memguard import guard_from_env  # torch: only when asked for

            with guard_from_env():
                main()
        else:
            main()
    except PrunetuneError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C: outputs are written whole or not at all, so nothing torn is left
        print("interrupted (Ctrl-C); run it again to finish (dvc repro: a fine-tune resumes)", file=sys.stderr)
        sys.exit(130)
    finally:
        if log := os.environ.get("PRUNETUNE_PEAK_LOG"):
            _log_peak_gpu_memory(Path(log))


def _log_peak_gpu_memory(log: Path) -> None:
    """Append {"argv", "peak_gpu_mb"}: torch's allocated peak on the GPU, null when no GPU was used."""
    torch = sys.modules.get("torch")  # never imported here: a stage that did not use torch used no GPU
    used = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    peak = torch.cuda.max_memory_allocated() / 2**20 if used else None
    with log.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"argv": sys.argv, "peak_gpu_mb": peak}) + "\n")


def stage_args(*names: str) -> list[str]:
    """The stage's command-line arguments (dvc.yaml's cmd passes every path a stage reads or writes), by name."""
    args = sys.argv[1:]
    if len(args) != len(names):
        raise PrunetuneError(f"usage: python {sys.argv[0]} {' '.join(names)} (as dvc.yaml's cmd gives them)")
    return args
