"""split stage: corpus -> OUT_DIR/{train,val,test}.jsonl + OUT_DIR/report.json.

python stages/split.py OUT_DIR
"""

from pathlib import Path

from prunetune.config import run_stage, stage_args
from prunetune.data import prepare_corpus
from prunetune.jsonio import write_json, write_jsonl
from prunetune.params import DataParams, load_section


def main() -> None:
    (out_dir,) = map(Path, stage_args("OUT_DIR"))
    examples, report = prepare_corpus(load_section(DataParams))
    for split, rows in examples.items():
        write_jsonl(out_dir / f"{split}.jsonl", rows)
    write_json(out_dir / "report.json", report)
    dropped = ", ".join(f"{k} {v}" for k, v in report["dropped"].items() if v) or "none"
    print(
        f"split: {report['articles_kept']} of {report['lines']} articles kept (dropped: {dropped}); "
        + ", ".join(f"{s} {n['total']} examples" for s, n in report["examples_per_split"].items())
    )


if __name__ == "__main__":
    run_stage(main)
