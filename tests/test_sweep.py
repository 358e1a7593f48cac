import csv
import json
import re

import pytest

from prunetune.cli import main
from prunetune.config import PrunetuneError
from prunetune.sweep import experiment_rows, pareto_mask, read_experiments, sweep_report


def exp_state(rev, name, method, n_layers, params_after, rouge, speed, perplexity):
    """One ExpState as `dvc exp show --json` (DVC 3.67) writes it; lists such as removed_layers are left out by DVC."""
    evaluation = {
        "summarization": {"rougeL": rouge, "rouge1": rouge + 0.1},
        "title_generation": {"rougeL": rouge / 2},
        "perplexity": perplexity,
        "efficiency": {"layers": 16 - n_layers, "params": params_after},
    }
    full = {"summarization": {"rougeL": 0.30}, "perplexity": 5.0, "efficiency": {"params": 1000, "layers": 16}}
    return {
        "rev": rev,
        "name": name,
        "data": {
            "rev": rev,
            "timestamp": "2026-01-01T00:00:00",
            "params": {"params.yaml": {"data": {"prune": {"method": method, "n_layers": n_layers}, "train": {}}}},
            "metrics": {
                "metrics/prune.json": {
                    "data": {"method": method, "layers_after": 16 - n_layers, "params_after": params_after}
                },  # fmt: skip
                "metrics/eval/ft_pruned.json": {"data": evaluation},
                "metrics/eval/ft_full.json": {"data": full},
                "metrics/speed/ft.json": {"data": {"decode_speedup_b1": speed, "ideal_speedup": 16 / (16 - n_layers)}},
            },
            "deps": {},
            "outs": {},
            "meta": {},
        },
        "error": None,
        "experiments": None,
    }


def queued(rev, name):
    state = exp_state(rev, name, "angular", 8, 600, 0.0, 0.0, 0.0)
    state["data"]["metrics"] = {}
    return {"revs": [state], "executor": {"state": "queued", "name": "dvc-task", "local": None}, "name": name}


def fake_exp_show():
    """A baseline commit (last layer removed) with two finished experiments, one queued, and the workspace holding
    a copy of the last experiment applied (as `dvc exp run` leaves it)."""
    baseline = exp_state("a" * 40, "main", "last", 1, 950, 0.20, 1.10, 9.0)
    baseline["experiments"] = [
        {"revs": [exp_state("b" * 40, "bi-2", "block_influence", 2, 900, 0.25, 1.20, 8.0)], "executor": None,
         "name": "bi-2"},
        {"revs": [exp_state("c" * 40, "ang-4", "angular", 4, 800, 0.15, 1.40, 12.0)], "executor": None,
         "name": "ang-4"},
        queued("d" * 40, "ang-8"),
    ]  # fmt: skip
    workspace = exp_state("workspace", None, "angular", 4, 800, 0.15, 1.40, 12.0)
    return [workspace, baseline]


def test_exp_show_json_becomes_one_row_per_finished_experiment():
    rows = experiment_rows(fake_exp_show())
    assert [r["experiment"] for r in rows] == ["bi-2", "ang-4", "main", "ft_full (unpruned)"]
    bi, ang, main_row, full = rows
    assert (bi["method"], bi["n_layers"], bi["layers"], bi["params"], bi["decode_speedup_b1"]) == (
        "block_influence", 2, 14, 900, 1.20,
    )  # fmt: skip
    assert ang["rev"] == "ccccccc" and main_row["method"] == "last" and main_row["n_layers"] == 1
    assert (full["variant"], full["method"], full["params"], full["layers"]) == ("ft_full", "none", 1000, 16)
    assert full["decode_speedup_b1"] == 1.0  # the reference of every pruned row's paired speedup
    assert bi["ideal_speedup"] == pytest.approx(16 / 14) and full["ideal_speedup"] == 1.0
    assert all(r["healing"] == "lora" for r in rows)


def test_pareto_mask():
    assert pareto_mask([1, 2, 3, 2], [1.0, 2.0, 3.0, 1.5]) == [True, True, True, False]
    assert pareto_mask([1, 1], [2.0, 2.0]) == [True, True]  # equal points do not dominate each other


def test_sweep_report_draws_the_pareto_plot_and_writes_its_table(tmp_path):
    paths = sweep_report(fake_exp_show(), tmp_path / "sweep")
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["plot"].stat().st_size > 10_000
    with paths["csv"].open() as handle:
        table = {row["experiment"]: row for row in csv.DictReader(handle)}
    assert list(table) == ["bi-2", "ang-4", "main", "ft_full (unpruned)"]
    # main (950 params, 0.20) is beaten by bi-2 (900 params, 0.25) on size and on speed; the rest trade off
    assert {name: row["pareto_params"] for name, row in table.items()} == {
        "bi-2": "True", "ang-4": "True", "main": "False", "ft_full (unpruned)": "True",
    }  # fmt: skip
    assert table["main"]["pareto_speed"] == "False" and table["ang-4"]["pareto_speed"] == "True"
    assert float(table["bi-2"]["summarization.rougeL"]) == 0.25 and float(table["ang-4"]["perplexity"]) == 12.0
    markdown = paths["markdown"].read_text()
    assert "| bi-2 | bbbbbbb | ft_pruned | block_influence | 2 |" in markdown


def test_perplexity_is_lower_is_better(tmp_path):
    paths = sweep_report(fake_exp_show(), tmp_path, metric="perplexity")
    with paths["csv"].open() as handle:
        table = {row["experiment"]: row for row in csv.DictReader(handle)}
    # perplexity: ft_full 5 < bi-2 8 < main 9 < ang-4 12; ang-4 is still the smallest and fastest
    assert [table[n]["pareto_params"] for n in ("bi-2", "ang-4", "main", "ft_full (unpruned)")] == [
        "True", "True", "False", "True",
    ]  # fmt: skip
    assert "lower is better" in paths["markdown"].read_text()


def test_cli_reads_saved_exp_show_json(tmp_path, capsys):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(fake_exp_show()))
    main(["sweep-report", "--from-json", str(saved), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "sweep.png").is_file() and (tmp_path / "out" / "sweep.md").is_file()
    assert "sweep.csv" in capsys.readouterr().out


def test_no_finished_experiment_is_a_one_line_error(tmp_path, capsys):
    saved = tmp_path / "exp.json"
    baseline = fake_exp_show()[1]
    baseline["data"]["metrics"] = {}
    baseline["experiments"] = [queued("d" * 40, "ang-8")]
    saved.write_text(json.dumps([baseline]))
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep-report", "--from-json", str(saved), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    assert "no experiment has metrics/eval/ft_pruned.json" in capsys.readouterr().err
    with pytest.raises(PrunetuneError, match="no metric 'summarization.bleu'"):
        sweep_report(fake_exp_show(), tmp_path, metric="summarization.bleu")


def test_outside_a_dvc_repository_exp_show_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PrunetuneError, match="dvc exp show --json` failed"):
        read_experiments()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[{"rev": "a"', r"exp\.json:1: malformed JSON .*dvc exp show --json > FILE"),
        ('{"rev": "a"}', r"not `dvc exp show --json` output \(a JSON dict, not a list of revisions\)"),
        ('[{"data": {}}]', r"not `dvc exp show --json` output \(\[0\] is not an object with a 'rev'\)"),
        ('[{"rev": "a", "data": {"metrics": []}}]', r"\(\[0\]\.data\.metrics is not an object of files\)"),
        (
            '[{"rev": "a", "experiments": [{"revs": [{"rev": 3}]}]}]',
            r"\(\[0\]\.experiments\[0\]\.revs\[0\] is not an object with a 'rev'\)",
        ),
    ],
)
@pytest.mark.parametrize("command", ["sweep-report", "seed-report"])
def test_malformed_or_wrongly_shaped_saved_json_is_one_line(tmp_path, capsys, text, problem, command):
    saved = tmp_path / "exp.json"
    saved.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--from-json", str(saved), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(problem, err), err


def test_missing_saved_json_does_not_point_at_dvc_repro(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep-report", "--from-json", str(tmp_path / "nope.json"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "nope.json: not found; check the --from-json path" in err and "dvc repro" not in err
