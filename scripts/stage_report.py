"""A committed report from scripts/stage_monitor.py's lines: each stage of one run named as dvc.yaml names it, its
wall time and peak RSS, with the machine, the date and the commit.

    python scripts/stage_report.py LINES.jsonl --cwd-contains exps --label "smollm2-135m seed 42" --out REPORT.json
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

VARIANT_OF = {"models/base": "base_full", "models/pruned": "base_pruned", "models/ft_full": "ft_full"}
VARIANT_OF["models/ft_pruned"] = "ft_pruned"


def stage_name(script: str, args: list[str]) -> str:
    """dvc.yaml's name for a stage process: the script's stem, with the variant or pair of a foreach stage."""
    stem = Path(script).stem
    if stem in ("eval", "qa"):
        return f"{stem}@{VARIANT_OF[args[0]]}"
    if stem == "speed":
        return f"speed@{'base' if args[0] == 'models/base' else 'ft'}"
    if stem == "finetune":
        return f"finetune_{'full' if args[0] == 'models/base' else 'pruned'}"
    return stem


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lines")
    parser.add_argument("--cwd-contains", default="", help="keep the processes whose working directory has this")
    parser.add_argument("--after", type=float, default=0, help="keep processes started after this Unix time")
    parser.add_argument("--before", type=float, default=float("inf"), help="... and before this one")
    parser.add_argument(
        "--pause",
        type=float,
        nargs=2,
        action="append",
        default=[],
        metavar=("START", "END"),
        help="Unix times between which the run was stopped (kill -STOP) for another measurement: not counted",
    )
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.lines).read_text().splitlines()]
    kept = [r for r in rows if args.cwd_contains in r.get("cwd", "") and args.after <= r["start"] < args.before]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {
        "label": args.label,
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
        "date": datetime.datetime.fromtimestamp(min(r["start"] for r in kept), datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "commit": commit,
        "stages": [
            {
                "stage": stage_name(r["stage"], r["args"]),
                "wall_s": round(
                    r["wall_s"]
                    - sum(max(0, min(end, r["last"]) - max(start, r["start"])) for start, end in args.pause),
                    1,
                ),
                "peak_rss_mb": round(r["peak_rss_mb"]),
            }
            for r in sorted(kept, key=lambda r: r["start"])
        ],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.out}: {len(kept)} stages")


if __name__ == "__main__":
    main()
