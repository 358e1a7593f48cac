"""The tag F1 a model gets without reading the article: one constant tag set for every test article.

python scripts/tag_baseline.py [SPLIT_DIR]   (default data/processed)

Like the type task's majority baseline, the set is chosen on the train split (the best of every set of 1 to 4
of its 12 most frequent tags); the set the test labels themselves would pick is printed beside it: what a
constant can reach at best on this test split.
"""

import itertools
import sys
from collections import Counter
from pathlib import Path

from prunetune.data import parse_tags
from prunetune.jsonio import read_jsonl
from prunetune.metrics import tag_scores


def gold_tags(path: Path) -> list[list[str]]:
    return [parse_tags(row["messages"][-1]["content"]) for row in read_jsonl(path) if row["task"] == "tag_extraction"]


def mean_f1(constant: tuple[str, ...], gold: list[list[str]]) -> float:
    return sum(tag_scores(list(constant), tags)["f1"] for tags in gold) / len(gold)


def main() -> None:
    split_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "data/processed")
    train, test = gold_tags(split_dir / "train.jsonl"), gold_tags(split_dir / "test.jsonl")
    frequent = [tag for tag, _ in Counter(tag for tags in train for tag in tags).most_common(12)]
    candidates = [combo for size in (1, 2, 3, 4) for combo in itertools.combinations(frequent, size)]
    chosen = max(candidates, key=lambda combo: mean_f1(combo, train))
    oracle = max(candidates, key=lambda combo: mean_f1(combo, test))
    print(f"chosen on train: {' | '.join(chosen)}: test tag F1 {mean_f1(chosen, test):.3f}")
    print(f"chosen on test (a constant's best): {' | '.join(oracle)}: test tag F1 {mean_f1(oracle, test):.3f}")


if __name__ == "__main__":
    main()
