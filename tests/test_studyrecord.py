import json
import subprocess
import sys
from pathlib import Path

import pytest

from prunetune.config import PrunetuneError
from prunetune.headline import VARIANTS, healing_figures
from prunetune.studyrecord import diff_rows, diff_table, metric_leaves, record


def write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))


def test_metric_leaves_keep_numbers_only():
    tree = {"a": 1, "b": {"c": 2.5, "d": "text", "e": [1, 2], "f": True}, "g": None}
    assert metric_leaves(tree) == {"a": 1.0, "b.c": 2.5}


def test_diff_table_lines_up_both_sides_and_the_change(tmp_path):
    write(tmp_path / "default/metrics/eval/x.json", {"rouge": 0.25, "only_default": 1})
    write(tmp_path / "study/metrics/eval/x.json", {"rouge": 0.5})
    write(tmp_path / "study/metrics/prune.json", {"layers_after": 26})
    rows = diff_rows(tmp_path / "default", tmp_path / "study")
    assert rows == [
        ("metrics/eval/x.json", "only_default", 1.0, "-"),
        ("metrics/eval/x.json", "rouge", 0.25, 0.5),
        ("metrics/prune.json", "layers_after", "-", 26.0),
    ]
    table = diff_table(rows, "default", "study").splitlines()
    assert table[0].split() == ["Path", "Metric", "default", "study", "Change"]
    assert table[2].split() == ["metrics/eval/x.json", "rouge", "0.25", "0.5", "0.25"]
    assert diff_rows(tmp_path / "default", tmp_path / "study", only="prune") == [rows[2]]


def test_diff_of_a_folder_without_metrics_is_one_line(tmp_path):
    with pytest.raises(PrunetuneError, match="has no metrics/ folder"):
        diff_rows(tmp_path, tmp_path / "nothing")


def test_record_copies_an_experiment_commit(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    dvc = str(Path(sys.executable).parent / "dvc")  # the venv's, whatever PATH holds
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    write(tmp_path / "params.yaml", "train:\n  seed: 1\n")
    write(tmp_path / "dvc.lock", "schema: '2.0'\nstages: {}\n")
    write(tmp_path / "data/processed/report.json", {"lines": 3})
    write(tmp_path / "metrics/eval/a.json", {"x": 1})
    write(tmp_path / "reports/comparison.md", "# table\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "exp")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    git("update-ref", "refs/exps/ab/cdef/my-exp", commit)

    paths = record("my-exp", tmp_path / "studies/s/my-exp", root=tmp_path)
    assert paths == [
        "data/processed/report.json",
        "dvc.lock",
        "metrics/eval/a.json",
        "params.yaml",
        "reports/comparison.md",
    ]
    out = tmp_path / "studies/s/my-exp"
    assert json.loads((out / "metrics/eval/a.json").read_text()) == {"x": 1}
    assert json.loads((out / "experiment.json").read_text())["commit"] == commit
    with pytest.raises(PrunetuneError, match="no DVC experiment named 'other'"):
        record("other", tmp_path / "studies/s/other", root=tmp_path)


def test_healing_figures_on_a_hand_worked_record(tmp_path):
    # two articles, one answer each: base_full 1.0 nats/token, base_pruned 2.0; ft_full 0.5, ft_pruned 0.75
    per_token = {"base_full": 1.0, "base_pruned": 2.0, "ft_full": 0.5, "ft_pruned": 0.75}
    for variant in VARIANTS:
        rows = [
            {
                "article_id": article,
                "task": "summarization",
                "nll_sum": per_token[variant] * tokens,
                "answer_tokens": tokens,
            }
            for article, tokens in (("a", 2), ("b", 4))
        ]
        write(tmp_path / f"predictions/{variant}.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    figures = healing_figures(tmp_path, n_resamples=200)
    assert figures["cost"]["value"] == pytest.approx(1.0) and figures["cost"]["ci"] == pytest.approx([1.0, 1.0])
    assert figures["remaining"]["value"] == pytest.approx(0.25)
    assert figures["recovered"]["value"] == pytest.approx(0.75)  # 1 - 0.25 / 1.0
    assert figures["fine_tuning_full"]["value"] == pytest.approx(-0.5)
    assert figures["articles"] == 2


def load_readme_tables():
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts/readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, ROOT


def block(text: str, start: str, end: str) -> list[str]:
    return text.split(start + "\n", 1)[1].split(end, 1)[0].rstrip("\n").split("\n")


def test_readme_headline_and_benchmarks_section_are_generated_from_the_committed_reports(monkeypatch):
    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # readme_tables imports speed_figures beside it
    tables, root = load_readme_tables()
    monkeypatch.chdir(root)
    readme, benchmarks = (root / "README.md").read_text(), (root / "BENCHMARKS.md").read_text()
    headline = tables.headline_lines(tables.STUDY)
    assert block(readme, tables.HEADLINE_START, tables.HEADLINE_END) == headline
    assert block(benchmarks, tables.REAL_START, tables.REAL_END) == tables.real_model_lines()
    # a figure typed over by hand is caught: plant one change and the comparison fails
    planted = readme.replace(headline[0], headline[0].replace("×", "x", 1))
    assert block(planted, tables.HEADLINE_START, tables.HEADLINE_END) != headline
