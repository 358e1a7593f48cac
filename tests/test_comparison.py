"""The comparison report against hand-worked numbers, and the plot stage on a small fixture."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import stage_argv

from prunetune.cli import main
from prunetune.comparison import PAIRS, VARIANTS, compare, healing_sentence, render_markdown
from prunetune.config import PrunetuneError
from prunetune.params import EvalParams
from prunetune.plots import layer_rows, training_rows

ROOT = Path(__file__).resolve().parents[1]
TASK_SCORES = {
    "summarization": ("rougeL", "rouge1", "rouge2", "bertscore_f1"),
    "title_generation": ("rougeL", "rouge1", "rouge2", "bertscore_f1"),
    "tag_extraction": ("f1", "exact_match", "jaccard"),
    "type_classification": ("accuracy",),
}
# per variant: the score of article a1 and a2 on every task, (nll_sum a1, a2), QA correctness of q1..q3
FIXTURE = {
    "base_full": (0.1, 0.2, (1.0, 1.0), (0, 1, 0)),
    "base_pruned": (0.1, 0.1, (1.0, 2.0), (0, 1, 0)),
    "ft_full": (0.2, 0.1, (1.0, 1.0), (0, 1, 0)),
    "ft_pruned": (0.5, 0.3, (2.0, 4.0), (1, 1, 0)),
}
TOKENS = (1, 2)  # answer tokens of a1, a2
# what reading nothing scores on a1, a2: the majority type right on a1 only, the constant tag set 0.1 on both
BASELINE_ROWS = {
    "type_classification": {"a1": {"baseline_scores": {"accuracy": 1.0}}, "a2": {"baseline_scores": {"accuracy": 0.0}}},
    "tag_extraction": {"a1": {"baseline_scores": {"f1": 0.1}}, "a2": {"baseline_scores": {"f1": 0.1}}},
}


def fixture_inputs() -> tuple[dict, dict, dict, dict]:
    eval_metrics, qa_metrics, predictions, qa_predictions = {}, {}, {}, {}
    for variant, (score_1, score_2, nll, correct) in FIXTURE.items():
        mean = (score_1 + score_2) / 2
        metrics = {}
        for task, names in TASK_SCORES.items():
            metrics[task] = {}
            for name in names:
                metrics[task][name], metrics[task][f"{name}_ci"] = mean, [min(score_1, score_2), max(score_1, score_2)]
            metrics[task]["perplexity"], metrics[task]["perplexity_ci"] = 5.0, [4.0, 6.0]
        metrics["type_classification"]["majority_baseline"] = 0.5
        metrics["tag_extraction"]["constant_baseline"] = 0.25
        ppl = math.exp(sum(nll) / sum(TOKENS))
        metrics.update(perplexity=ppl, perplexity_ci=[ppl * 0.9, ppl * 1.1])
        metrics["efficiency"] = {
            "size_mb": 3.5 if "full" in variant else 3.3,
            "params": 100 if "full" in variant else 90,
        }
        eval_metrics[variant] = metrics
        predictions[variant] = [
            {
                "task": task,
                "article_id": article,
                "scores": dict.fromkeys(TASK_SCORES[task], score),
                # an article's NLL and tokens spread over its four task rows: the totals stay 6 over 3 tokens
                "nll_sum": nll_sum / len(TASK_SCORES),
                "answer_tokens": tokens / len(TASK_SCORES),
                **BASELINE_ROWS.get(task, {}).get(article, {}),
            }
            for task in TASK_SCORES
            for article, score, nll_sum, tokens in zip(("a1", "a2"), (score_1, score_2), nll, TOKENS, strict=True)
        ]
        accuracy = sum(correct) / 3
        qa_metrics[variant] = {
            "accuracy": accuracy,
            "accuracy_ci": [0.0, 1.0],
            "n": 3,
            "gold_avg_loglik": -2.0,
            "gold_avg_loglik_ci": [-2.5, -1.5],
            "by_category": {"factual": {"accuracy": accuracy, "accuracy_ci": [0.0, 1.0], "n": 3}},
            "by_difficulty": {"easy": {"accuracy": accuracy, "accuracy_ci": [0.0, 1.0], "n": 3}},
        }
        qa_predictions[variant] = [{"id": f"q{i}", "correct": bool(c)} for i, c in enumerate(correct, 1)]
    return eval_metrics, qa_metrics, predictions, qa_predictions


def test_table_holds_each_variants_numbers_with_intervals():
    comparison = compare(*fixture_inputs())
    row = comparison["table"]["ft_pruned"]
    assert row["summarization_rougeL"] == pytest.approx(0.4)
    assert row["summarization_rougeL_ci"] == [0.3, 0.5]
    assert row["type_accuracy"] == pytest.approx(0.4)
    assert row["perplexity"] == pytest.approx(math.exp(6 / 3))
    assert row["qa_accuracy"] == pytest.approx(2 / 3)
    baselines = {f"{v}-{b}" for v in ("ft_full", "ft_pruned") for b in ("majority_type", "constant_tags")}
    assert set(comparison["differences"]) == {f"{a}-{b}" for a, b in PAIRS} | baselines


def test_paired_differences_against_a_direct_computation():
    differences = compare(*fixture_inputs())["differences"]
    # ft_pruned - ft_full on ROUGE-L: per-article differences 0.3 and 0.2, so every resample's mean lies in
    # [0.2, 0.3] and the interval excludes zero
    rouge = differences["ft_pruned-ft_full"]["summarization_rougeL"]
    assert rouge["diff"] == pytest.approx(0.25)
    assert 0.2 - 1e-9 <= rouge["ci"][0] <= rouge["ci"][1] <= 0.3 + 1e-9
    assert rouge["excludes_zero"] and rouge["n"] == 2
    # log-perplexity: sum NLL / sum tokens over all rows for each side: 6/3 - 2/3 = 4/3 (perplexity ratio e^(4/3))
    log_ppl = differences["ft_pruned-ft_full"]["log_ppl"]
    assert log_ppl["diff"] == pytest.approx(6 / 3 - 2 / 3)
    assert log_ppl["n"] == 8 and log_ppl["units"] == 2  # 8 rows, resampled as 2 articles
    # per task: each task holds a quarter of both articles' NLL and tokens, so each task's gap is the same 4/3
    assert differences["ft_pruned-ft_full"]["log_ppl_summarization"]["diff"] == pytest.approx(4 / 3)
    assert differences["ft_pruned-ft_full"]["log_ppl_summarization"]["n"] == 2
    # QA: per-question differences 1, 0, 0 -> mean 1/3; a resample of only zeros is likely, so zero is inside
    qa = differences["ft_pruned-ft_full"]["qa_accuracy"]
    assert qa["diff"] == pytest.approx(1 / 3)
    assert qa["ci"][0] == 0.0 and not qa["excludes_zero"]
    # identical variants on a task: a zero difference whose interval is [0, 0], which does not exclude zero
    same = differences["ft_full-base_full"]["log_ppl"]
    assert same["diff"] == 0.0 and same["ci"] == [0.0, 0.0] and not same["excludes_zero"]
    # base_full - base_pruned scores (0.1, 0.2) vs (0.1, 0.1): direct mean difference -0.05
    assert differences["base_pruned-base_full"]["title_rougeL"]["diff"] == pytest.approx(-0.05)


def test_variants_scored_on_different_examples_are_refused():
    eval_metrics, qa_metrics, predictions, qa_predictions = fixture_inputs()
    predictions["ft_full"] = predictions["ft_full"][:-1]
    with pytest.raises(PrunetuneError, match="predictions/ft_pruned.jsonl and predictions/ft_full.jsonl score"):
        compare(eval_metrics, qa_metrics, predictions, qa_predictions)


def test_holm_decides_what_is_bold_within_the_primary_family():
    comparison = compare(*fixture_inputs())
    rouge = comparison["differences"]["ft_pruned-ft_full"]["summarization_rougeL"]
    # every resample's difference is in [0.2, 0.3] > 0: p = 2 * (0 + 1) / 1001; Holm over the 11 primary tests
    assert rouge["family"] == "primary"
    assert rouge["p_value"] == pytest.approx(2 / 1001) and rouge["p_holm"] == pytest.approx(11 * 2 / 1001)
    assert rouge["holm_significant"]
    assert comparison["multiplicity"]["families"] == {"primary": 11, "secondary": 33}
    assert comparison["multiplicity"]["p_floor"] == pytest.approx(2 / 1001)
    secondary = comparison["differences"]["ft_full-base_full"]["summarization_rougeL"]
    assert secondary["family"] == "secondary"
    same = comparison["differences"]["ft_full-base_full"]["log_ppl"]
    assert same["p_value"] == 1.0 and not same["holm_significant"]  # identical: P(d <= 0) = P(d >= 0) = 1
    # with 200 resamples the floor 2/201 exceeds 0.05/11: nothing can be significant, and the report says so
    few = compare(*fixture_inputs(), n_resamples=200)
    assert not any(d["holm_significant"] for d in few["differences"]["ft_pruned-ft_full"].values())
    assert "no test can reach Holm significance" in render_markdown(few, {"qa": 3, "articles": 2})


def test_fine_tuned_models_are_tested_against_reading_nothing():
    differences = compare(*fixture_inputs())["differences"]
    # ft_pruned type accuracy per article (0.5, 0.3) against the majority's (1, 0): mean 0.4 - 0.5 = -0.1
    majority = differences["ft_pruned-majority_type"]["type_accuracy"]
    assert majority["diff"] == pytest.approx(-0.1) and majority["family"] == "primary"
    # ft_full tag F1 (0.2, 0.1) against the constant set's (0.1, 0.1): +0.05, every resample in [0, 0.1]
    constant = differences["ft_full-constant_tags"]["tag_f1"]
    assert constant["diff"] == pytest.approx(0.05) and 0 <= constant["ci"][0] <= constant["ci"][1] <= 0.1 + 1e-9


def healing_inputs(ppl: dict[str, tuple[float, float]]) -> tuple:
    """Two articles, one summarization answer each (one token): a variant's NLL on an article is ln(its perplexity
    there); the other tasks copy it, so every per-task gap equals the pooled one."""
    eval_metrics, qa_metrics, predictions, qa_predictions = fixture_inputs()
    for variant, (p1, p2) in ppl.items():
        for row in predictions[variant]:
            row["nll_sum"], row["answer_tokens"] = math.log(p1 if row["article_id"] == "a1" else p2), 1
    return eval_metrics, qa_metrics, predictions, qa_predictions


def test_healing_on_the_log_scale_hand_worked():
    # a1: base 20 -> pruned 30, fine-tuned 10 -> pruned 14; a2: 20 -> 40, 10 -> 12. Log gaps per article:
    # base ln 1.5 = 0.405, ln 2 = 0.693; fine-tuned ln 1.4 = 0.336, ln 1.2 = 0.182. Pooled (means of logs):
    # gap_base = (ln 1.5 + ln 2) / 2 = ln 3 / 2 = 0.549, gap_ft = ln 1.68 / 2 = 0.259: recovered 1 - ln 1.68 / ln 3
    ppl = {"base_full": (20, 20), "base_pruned": (30, 40), "ft_full": (10, 10), "ft_pruned": (14, 12)}
    heal = compare(*healing_inputs(ppl), n_resamples=2000)["healing"]["all_answers"]
    assert heal["gap_base"] == pytest.approx(math.log(3) / 2) and heal["gap_ft"] == pytest.approx(math.log(1.68) / 2)
    assert heal["meaningful"]  # every resample's base gap is in [0.405, 0.693] > 0: Holm-significant
    assert heal["recovered_fraction"] == pytest.approx(1 - math.log(1.68) / math.log(3))
    low, high = heal["recovered_fraction_ci"]  # Fieller's interval holds the estimate
    assert low < heal["recovered_fraction"] < high
    # a ratio with the gap's sign unclear is not given: a1 pruning costs, a2 pruning helps
    mixed = {"base_full": (20, 20), "base_pruned": (30, 15), "ft_full": (10, 10), "ft_pruned": (14, 10)}
    comparison = compare(*healing_inputs(mixed), n_resamples=2000)
    heal = comparison["healing"]["all_answers"]
    assert not heal["meaningful"] and heal["recovered_fraction"] is None and heal["recovered_fraction_ci"] is None
    assert "no recovered fraction is given" in healing_sentence(comparison["healing"])


def test_markdown_report_marks_differences_that_exclude_zero():
    comparison = compare(*fixture_inputs())
    text = render_markdown(comparison, {"summarization": 2, "qa": 3, "articles": 2})
    assert "The 11 pre-declared primary tests" in text and "the other 33 tests form the secondary family" in text
    assert "With 2 test articles a percentile interval under-covers" in text and "## Healing" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert "| ft_pruned − majority_type type_accuracy | -0.1000 |" in text  # a primary test's row
    pruned_vs_full = next(line for line in table_rows if line.startswith("| ft_pruned − ft_full |"))
    assert "**+0.250 [" in pruned_vs_full  # summarization ROUGE-L, interval excludes zero
    assert "| +0.333 [" in pruned_vs_full  # QA, interval touches zero: not bold
    assert comparison["baselines"] == {"tag_f1": 0.25, "type_accuracy": 0.5}
    assert "Without reading the article: type accuracy 0.500 (always the train split's majority type); " in text
    assert "tag F1 0.250 (one constant tag set, the best on the train split)." in text


def write_fixture_workspace(path: Path) -> None:
    eval_metrics, qa_metrics, predictions, qa_predictions = fixture_inputs()
    for variant in VARIANTS:
        for folder, payload in (("metrics/eval", eval_metrics), ("metrics/qa", qa_metrics)):
            (path / folder).mkdir(parents=True, exist_ok=True)
            (path / folder / f"{variant}.json").write_text(json.dumps(payload[variant]))
        (path / "predictions").mkdir(exist_ok=True)
        for name, rows in ((variant, predictions[variant]), (f"qa_{variant}", qa_predictions[variant])):
            (path / "predictions" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prune = {"method": "block_influence", "removed_layers": [2], "layers_before": 4, "layers_after": 3}
    prune["layer_scores"] = [0.5, 0.3, 0.01, 0.2]
    (path / "metrics/prune.json").write_text(json.dumps(prune))
    (path / "metrics/speed").mkdir()
    for pair, pruned_b8 in (("base", 840.0), ("ft", 850.0)):  # the shape of efficiency.pruning_speed
        speed = {"batch_size": 8, "ideal_speedup": 1.05, "full": {"decode_tokens_per_s_b1": 100.0,
                 "decode_tokens_per_s_b8": 800.0}, "pruned": {"decode_tokens_per_s_b1": 104.0,
                 "decode_tokens_per_s_b8": pruned_b8}}  # fmt: skip
        speed.update(decode_speedup_b1=1.04, decode_speedup_b8=pruned_b8 / 800)
        (path / f"metrics/speed/{pair}.json").write_text(json.dumps(speed))
    for variant in ("full", "pruned"):
        for file, column in (("train/loss.tsv", "loss"), ("eval/loss.tsv", "loss")):
            tsv = path / f"metrics/train/{variant}/plots/metrics/{file}"
            tsv.parent.mkdir(parents=True, exist_ok=True)
            tsv.write_text(f"step\t{column}\n0\t3.0\n2\t2.5\n")
    eval_section = {**yaml.safe_load((ROOT / "params.yaml").read_text())["eval"], "bootstrap_resamples": 200}
    (path / "params.yaml").write_text(yaml.safe_dump({"eval": eval_section}))


def test_compare_and_plot_stages_on_a_small_fixture(tmp_path):
    write_fixture_workspace(tmp_path)
    for stage in ("compare", "plot"):
        result = subprocess.run(stage_argv(stage, sys.executable), cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    comparison = json.loads((tmp_path / "metrics/comparison.json").read_text())
    assert comparison["differences"]["ft_pruned-ft_full"]["summarization_rougeL"]["diff"] == pytest.approx(0.25)
    assert "| ft_pruned |" in (tmp_path / "reports/comparison.md").read_text()
    assert set(comparison["healing"]["all_answers"]) >= {"gap_base", "gap_ft", "recovered_fraction_ci"}
    for name in ("training", "quality", "qa", "efficiency", "layers"):
        png = (tmp_path / f"plots/{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
    with (tmp_path / "plots/data/variants.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == list(VARIANTS)
    assert float(rows[3]["summarization_rougeL"]) == pytest.approx(0.4)
    # each variant's speed from its pair's file; the full model is its pair's reference
    assert [float(r["decode_tokens_per_s_batched"]) for r in rows] == [800.0, 840.0, 800.0, 850.0]
    assert [float(r["decode_speedup_batched"]) for r in rows] == [1.0, 1.05, 1.0, 850 / 800]
    with (tmp_path / "plots/data/layers.csv").open() as handle:
        layers = list(csv.DictReader(handle))
    assert [int(r["removed"]) for r in layers] == [0, 0, 1, 0] and float(layers[2]["score"]) == 0.01
    # the dvc plots tables of the training curves: a column per fine-tune, the legend's names
    assert (tmp_path / "plots/data/training/train_loss.csv").read_text() == "step,full,pruned\n0,3.0,3.0\n2,2.5,2.5\n"
    assert (tmp_path / "plots/data/training/val_token_accuracy.csv").read_text() == "step,full,pruned\n"  # not logged


def test_layer_labels_sort_as_numbers():
    labels = [row["layer"] for row in layer_rows({"removed_layers": [11], "layers_before": 12})]
    assert labels == sorted(labels) == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"]


def test_training_rows_line_up_steps_and_leave_gaps_blank(tmp_path):
    for variant, rows in (("full", "0\t3.0\n2\t2.5\n"), ("pruned", "2\t2.0\n4\t1.5\n")):
        tsv = tmp_path / variant / "plots/metrics/train/loss.tsv"
        tsv.parent.mkdir(parents=True)
        tsv.write_text("step\tloss\n" + rows)
    rows = training_rows({v: tmp_path / v for v in ("full", "pruned")}, "train/loss.tsv", "loss")
    assert rows == [
        {"step": 0, "full": 3.0, "pruned": ""},
        {"step": 2, "full": 2.5, "pruned": 2.0},
        {"step": 4, "full": "", "pruned": 1.5},
    ]


def test_plot_stage_names_a_missing_metrics_file(tmp_path):
    write_fixture_workspace(tmp_path)
    subprocess.run(stage_argv("compare", sys.executable), cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "metrics/qa/ft_pruned.json").unlink()
    result = subprocess.run(stage_argv("plot", sys.executable), cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: metrics/qa/ft_pruned.json: not found")


def test_bca_intervals_sit_beside_and_can_be_shown():
    comparison = compare(*fixture_inputs(), ci_method="bca")
    rouge = comparison["differences"]["ft_pruned-ft_full"]["summarization_rougeL"]
    assert len(rouge["ci"]) == len(rouge["ci_bca"]) == 2  # the percentile interval is kept beside BCa
    text = render_markdown(comparison, {"summarization": 2, "qa": 3, "articles": 2})
    assert "(bca)" in text and "BCa intervals (bias-corrected and accelerated)" in text
    with pytest.raises(PrunetuneError, match=r"params.yaml: eval.ci_method must be one of percentile, bca"):
        EvalParams.parse({**yaml.safe_load((ROOT / "params.yaml").read_text())["eval"], "ci_method": "normal"})


def test_recompare_reproduces_the_committed_report_from_the_predictions(tmp_path, capsys, monkeypatch):
    write_fixture_workspace(tmp_path)
    result = subprocess.run(stage_argv("compare", sys.executable), cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    monkeypatch.chdir(tmp_path)
    main(["recompare"])
    assert "recompare: every figure of reports/comparison.md recomputed from predictions/ agrees" in (
        capsys.readouterr().out
    )
    # one published prediction changed: the recomputed intervals no longer match the committed report
    rows = (tmp_path / "predictions/ft_pruned.jsonl").read_text().splitlines()
    row = json.loads(rows[0])
    row["scores"] = {name: 0.0 for name in row["scores"]}
    (tmp_path / "predictions/ft_pruned.jsonl").write_text("\n".join([json.dumps(row), *rows[1:]]) + "\n")
    with pytest.raises(SystemExit):
        main(["recompare"])
    assert "reports/comparison.md differs from its recomputation" in capsys.readouterr().err
