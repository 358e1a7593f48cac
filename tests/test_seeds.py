import json

import pytest

from prunetune.cli import main
from prunetune.config import PrunetuneError
from prunetune.seeds import _with_intervals, pool_differences, read_comparisons, seed_report, seed_runs


def state(rev, name, differences):
    """An ExpState as `dvc exp show --json` writes it, holding only metrics/comparison.json."""
    data = {"differences": differences, "table": {}}
    return {
        "rev": rev,
        "name": name,
        "data": {"rev": rev, "params": {}, "metrics": {"metrics/comparison.json": {"data": data}}},
        "error": None,
        "experiments": None,
    }


def diff(value, low, high, significant):
    return {"diff": value, "ci": [low, high], "excludes_zero": significant, "n": 40}


def fake_exp_show():
    seeds = [
        # tag_f1 significant and positive in all three; perplexity positive but significant in one only
        ("aaa1", "seed-1", {"tag_f1": diff(0.30, 0.2, 0.4, True), "perplexity": diff(5, -1, 9, False)}),
        ("bbb2", "seed-2", {"tag_f1": diff(0.20, 0.1, 0.3, True), "perplexity": diff(9, 2, 16, True)}),
        ("ccc3", "seed-3", {"tag_f1": diff(0.25, 0.1, 0.4, True), "perplexity": diff(-2, -8, 4, False)}),
    ]
    seeds = [(rev, name, {"ft_full-base_full": d}) for rev, name, d in seeds]
    experiments = [{"revs": [state(rev, name, d)], "name": name} for rev, name, d in seeds]
    baseline = state("f" * 40, "main", seeds[0][2])  # main holds seed 1's results: kept once
    baseline["experiments"] = experiments
    return [baseline]


def test_pool_by_hand():
    runs = seed_runs(fake_exp_show())
    assert list(runs) == ["seed-1", "seed-2", "seed-3"]  # main repeats seed-1 and is dropped
    rows = {(r["pair"], r["metric"]): r for r in pool_differences(runs)}
    tag = rows[("ft_full-base_full", "tag_f1")]
    assert tag["mean"] == pytest.approx(0.25)
    assert tag["seed_sd"] == pytest.approx(0.05)  # sample sd of 0.30, 0.20, 0.25
    # t-interval over the three seeds: 0.25 ± t(2, 0.975) · 0.05 / sqrt(3) = 0.25 ± 4.3027 · 0.028868 = ± 0.1242
    assert tag["t_ci"] == pytest.approx([0.25 - 0.124208, 0.25 + 0.124208], abs=1e-5)
    assert (tag["same_sign"], tag["significant"]) == (3, 3)
    ppl = rows[("ft_full-base_full", "perplexity")]
    assert ppl["mean"] == pytest.approx(4.0)
    assert ppl["seed_sd"] == pytest.approx(5.5677643628)  # sqrt(((5-4)^2 + (9-4)^2 + (-2-4)^2) / 2) = sqrt(31)
    assert (ppl["same_sign"], ppl["significant"]) == (2, 1)


def test_report_files_and_verdicts(tmp_path):
    paths = seed_report(fake_exp_show(), tmp_path)
    table = paths["markdown"].read_text()
    assert "| ft_full − base_full | tag_f1 | +0.3 | +0.2 | +0.25 | +0.25 | [+0.1258, +0.3742] | 0.05 |" in table
    assert "+ (t-interval excludes 0); 3/3 seeds significant" in table
    # perplexity 5, 9, -2: mean 4, sd 5.568, t-interval 4 ± 13.83 spans zero whatever one seed said
    assert "not detected; 1/3 seeds significant" in table
    assert json.loads(paths["json"].read_text())["experiments"] == ["seed-1", "seed-2", "seed-3"]
    # each run's comparison is committed beside the table, and the table recomputes from those files alone
    assert json.loads((tmp_path / "seed-2" / "comparison.json").read_text())["differences"]["ft_full-base_full"]
    again = seed_report(None, tmp_path / "again", runs=read_comparisons(tmp_path))
    assert again["markdown"].read_text() == table


def test_cli_pools_committed_comparisons(tmp_path, capsys):
    seed_report(fake_exp_show(), tmp_path)
    main(["seed-report", "--comparisons", str(tmp_path), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "seeds.md").read_text() == (tmp_path / "seeds.md").read_text()
    with pytest.raises(SystemExit):
        main(["seed-report", "--comparisons", str(tmp_path / "empty"), "--out", str(tmp_path / "x")])
    assert "holds 0 NAME/comparison.json; pooling needs at least 2" in capsys.readouterr().err


def test_named_experiments_and_errors(tmp_path):
    assert list(seed_runs(fake_exp_show(), ["seed-2", "seed-3"])) == ["seed-2", "seed-3"]
    with pytest.raises(PrunetuneError, match="no metrics/comparison.json for experiment\\(s\\) seed-9"):
        seed_runs(fake_exp_show(), ["seed-1", "seed-9"])
    with pytest.raises(PrunetuneError, match="pooling needs at least 2"):
        seed_runs(fake_exp_show(), ["seed-1"])


def test_cli_reads_saved_json(tmp_path, capsys):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(fake_exp_show()))
    main(["seed-report", "--from-json", str(saved), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "seeds.md").is_file()
    with pytest.raises(SystemExit):
        main(["seed-report", "--from-json", str(saved), "--out", str(tmp_path / "out"), "nope"])
    assert "seed-report: no metrics/comparison.json for experiment(s) nope" in capsys.readouterr().err


def test_intervals_dropped_by_exp_show_are_read_from_the_file(tmp_path, monkeypatch):
    """`dvc exp show --json` leaves lists out of metrics; the report then reads the file itself."""
    shown = fake_exp_show()
    for state in [shown[0], *(e["revs"][0] for e in shown[0]["experiments"])]:
        comparison = state["data"]["metrics"]["metrics/comparison.json"]["data"]
        for entry in comparison["differences"]["ft_full-base_full"].values():
            entry.pop("ci", None)  # main shares seed-1's entries
    shown[0]["rev"] = "workspace"
    full = {"differences": {"ft_full-base_full": {"tag_f1": diff(0.3, 0.25, 0.35, True)}}, "table": {}}
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "comparison.json").write_text(json.dumps(full))
    monkeypatch.chdir(tmp_path)
    data = shown[0]["data"]["metrics"]["metrics/comparison.json"]["data"]
    assert _with_intervals(data, "workspace")["differences"]["ft_full-base_full"]["tag_f1"]["ci"] == [0.25, 0.35]
    with pytest.raises(PrunetuneError, match="cannot read metrics/comparison.json at aaa1"):
        _with_intervals(data, "aaa1")  # not a commit of this (temporary) directory
