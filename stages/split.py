"""split stage: corpus -> data/processed/{train,val,test}.jsonl + report.json."""

from pathlib import Path

from prunetune.config import run_stage
from prunetune.data import prepare_corpus
from prunetune.jsonio import write_json, write_jsonl
from prunetune.params import DataParams, load_section

OUT_DIR = Path("data/processed")


def main() -> None:
    examples, report = prepare_corpus(load_section(DataParams))
    for split, rows in examples.items():
        write_jsonl(OUT_DIR / f"{split}.jsonl", rows)
    write_json(OUT_DIR / "report.json", report)
    dropped = ", ".join(f"{k} {v}" for k, v in report["dropped"].items() if v) or "none"
    print(
        f"split: {report['articles_kept']} of {report['lines']} articles kept (dropped: {dropped}); "
        + ", ".join(f"{s} {n['total']} examples" for s, n in report["examples_per_split"].items())
    )


if __name__ == "__main__":
    run_stage(main)
