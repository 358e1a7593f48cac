"""The `prunetune` command. Pipeline stages run through `dvc repro`; this holds the tools around it."""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import version


def info(_: argparse.Namespace) -> None:
    """Print what the pipeline will run on: versions and the device chosen."""
    import torch

    from prunetune.models import pick_device, pick_dtype

    device = pick_device()
    print(f"prunetune {version('prunetune')} on Python {platform.python_version()}")
    for package in ("torch", "transformers", "peft", "trl", "dvc", "dvclive"):
        print(f"  {package:<13}{version(package)}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"  device       {device} ({name}), dtype {pick_dtype(device)}, {torch.get_num_threads()} threads")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="prunetune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions and the device the pipeline will use").set_defaults(run=info)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
