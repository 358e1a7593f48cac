"""The eval stage's logic: generate per task, score every example, and put intervals on the headline numbers."""

from __future__ import annotations

from collections import Counter
from typing import Any

from prunetune.chat import DEFAULT_CHAT_DATE, IGNORE_INDEX, prompt_ids, tokenize_chat
from prunetune.config import PrunetuneError
from prunetune.data import TASKS, article_content, parse_tags
from prunetune.generation import completion_nll, generate_greedy
from prunetune.metrics import (
    bertscore_f1,
    bertscore_info,
    constant_tags_baseline,
    majority_baseline,
    micro_f1_of_counts,
    normalize_label,
    rouge_scores,
    tag_counts,
    tag_scores,
)
from prunetune.params import EvalParams, as_section
from prunetune.stats import bootstrap_ci, mean_with_ci, perplexity, perplexity_ci


def score_task(
    task: str, predictions: list[str], references: list[str], cfg: EvalParams | dict[str, Any], train_types: list[str]
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """The task's headline metrics (each with its interval) and the per-example scores behind them."""
    cfg = as_section(EvalParams, cfg)
    if task in ("summarization", "title_generation"):
        per_example = rouge_scores(predictions, references)
        for scores, f1 in zip(per_example, bertscore_f1(predictions, references, cfg.bertscore_model), strict=True):
            scores["bertscore_f1"] = f1
        names = ["rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1"]
    elif task == "tag_extraction":
        predicted, gold = [parse_tags(p) for p in predictions], [parse_tags(r) for r in references]
        per_example = [tag_scores(p, g) for p, g in zip(predicted, gold, strict=True)]
        names = ["exact_match", "jaccard", "f1"]
    else:
        per_example = [
            {"accuracy": float(normalize_label(p) == normalize_label(r))}
            for p, r in zip(predictions, references, strict=True)
        ]
        names = ["accuracy"]
    metrics: dict[str, Any] = {}
    for name in names:
        values = [scores[name] for scores in per_example]
        metrics.update(mean_with_ci(name, values, cfg.bootstrap_resamples, cfg.seed, cfg.ci_method))
    if task == "tag_extraction":
        counts = tag_counts(predicted, gold)
        metrics["micro_f1"] = micro_f1_of_counts(counts)
        metrics["micro_f1_ci"] = bootstrap_ci(
            len(gold),
            lambda idx: micro_f1_of_counts(counts[i] for i in idx),
            n_resamples=cfg.bootstrap_resamples,
            seed=cfg.seed,
            method=cfg.ci_method,
        )
    if task == "type_classification":
        metrics["majority_baseline"] = majority_baseline(train_types, references)[1]
    return metrics, per_example


def text_rows(tokenizer: Any, texts: list[str]) -> list[dict[str, list[int]]]:
    """Plain article texts as scored rows: every token after the first is predicted (the tokenizer's own
    beginning-of-text token, when it adds one, is never scored)."""
    rows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] + ids[1:]})
    return rows


def baseline_scores(task: str, references: list[str], majority: str | None, constant_tags: list[str] | None) -> list:
    """Per example, what a model that never reads the article scores: the majority type's accuracy, the constant
    tag set's F1 (both chosen on train); None where the task has no such baseline. Compare pairs these with a
    model's scores."""
    if task == "type_classification" and majority is not None:
        return [{"accuracy": float(normalize_label(majority) == normalize_label(r))} for r in references]
    if task == "tag_extraction" and constant_tags is not None:
        return [{"f1": tag_scores(constant_tags, parse_tags(r))["f1"]} for r in references]
    return [None] * len(references)


def evaluate(
    model: Any,
    tokenizer: Any,
    test_examples: list[dict[str, Any]],
    train_examples: list[dict[str, Any]],
    cfg: EvalParams | dict[str, Any],
    date_string: str = DEFAULT_CHAT_DATE,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Metrics (DESIGN.md's shape, without efficiency), one prediction row per example, and the counts.

    date_string: the date chat templates print (params.yaml data.chat_date)."""
    cfg = as_section(EvalParams, cfg)
    if not test_examples:
        raise PrunetuneError(
            "data/processed/test.jsonl: the test split is empty; lower data.test_fraction's rounding or add articles"
        )
    train_types = [e["messages"][2]["content"] for e in train_examples if e["task"] == "type_classification"]
    train_tags = [parse_tags(e["messages"][2]["content"]) for e in train_examples if e["task"] == "tag_extraction"]
    constant_tags = None  # the tag set a model that never reads the article would answer (chosen on train)
    metrics: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    counts: dict[str, Any] = {"examples": {}, "hit_max_new_tokens": {}}
    majority = majority_baseline(train_types, train_types)[0] if train_types else None
    scored = [tokenize_chat(tokenizer, e["messages"], date_string) for e in test_examples]
    nll = completion_nll(model, scored, cfg.batch_size)
    # the article text each prompt shows, scored once per article: pruning's cost on text, not on answer formats
    texts = {e["article_id"]: article_content(e) for e in test_examples}
    text_scores = completion_nll(model, text_rows(tokenizer, list(texts.values())), cfg.batch_size)
    text_nll = dict(zip(texts, text_scores, strict=True))
    for task in TASKS:
        indices = [i for i, e in enumerate(test_examples) if e["task"] == task]
        if not indices:
            continue
        examples = [test_examples[i] for i in indices]
        prompts = [prompt_ids(tokenizer, e["messages"][:2], date_string) for e in examples]
        generated = generate_greedy(
            model, tokenizer, prompts, getattr(cfg.max_new_tokens, task), cfg.batch_size, desc=f"generating {task}"
        )
        predictions = [g["text"] for g in generated]
        references = [e["messages"][2]["content"] for e in examples]
        metrics[task], per_example = score_task(task, predictions, references, cfg, train_types)
        if task == "tag_extraction" and train_tags:
            gold = [parse_tags(r) for r in references]
            constant_tags, metrics[task]["constant_baseline"] = constant_tags_baseline(train_tags, gold)
        reading_nothing = baseline_scores(task, references, majority, constant_tags)
        task_nll = [nll[i] for i in indices]
        task_sums, task_tokens = [s for s, _ in task_nll], [n for _, n in task_nll]
        metrics[task]["perplexity"] = perplexity(task_sums, task_tokens)
        metrics[task]["perplexity_ci"] = perplexity_ci(
            task_sums, task_tokens, cfg.bootstrap_resamples, cfg.seed, method=cfg.ci_method
        )
        counts["examples"][task] = len(examples)
        counts["hit_max_new_tokens"][task] = sum(g["hit_max_new_tokens"] for g in generated)
        for example, generation, scores, baseline, (nll_sum, n_tokens) in zip(
            examples, generated, per_example, reading_nothing, task_nll, strict=True
        ):
            text_sum, text_tokens = text_nll[example["article_id"]]
            row = {
                "article_id": example["article_id"],
                "task": task,
                "prompt": example["messages"][1]["content"],
                "reference": example["messages"][2]["content"],
                "prediction": generation["text"],
                "new_tokens": generation["new_tokens"],
                "hit_max_new_tokens": generation["hit_max_new_tokens"],
                "nll_sum": nll_sum,
                "answer_tokens": n_tokens,
                "text_nll_sum": text_sum,
                "text_tokens": text_tokens,
                "scores": scores,
            }
            if baseline is not None:
                row["baseline_scores"] = baseline
            rows.append(row)
    sums, tokens = [s for s, _ in nll], [n for _, n in nll]
    metrics["perplexity"] = perplexity(sums, tokens)
    # an article's four task answers are pooled here: resample articles, not answers (a cluster bootstrap)
    metrics["perplexity_ci"] = perplexity_ci(
        sums,
        tokens,
        cfg.bootstrap_resamples,
        cfg.seed,
        clusters=[e["article_id"] for e in test_examples],
        method=cfg.ci_method,
    )
    metrics["intervals"] = {
        "method": cfg.ci_method,
        "resampled": "test examples per task; articles (cluster bootstrap) for the pooled perplexity",
    }
    if any(task in metrics for task in ("summarization", "title_generation")):
        metrics["bertscore"] = bertscore_info(cfg.bertscore_model)
    counts["type_labels_in_train"] = dict(sorted(Counter(train_types).items()))
    counts["majority_label"] = majority
    if constant_tags is not None:
        counts["constant_tags"] = " | ".join(constant_tags)
    return metrics, rows, counts
