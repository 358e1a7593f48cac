import json
import math

import pytest
import torch
from conftest import chat_examples

from prunetune.chat import prompt_ids, tokenize_chat
from prunetune.config import PrunetuneError
from prunetune.data import article_id, parse_tags
from prunetune.evaluation import baseline_scores, evaluate, score_task
from prunetune.generation import completion_nll, generate_greedy
from prunetune.metrics import constant_tags_baseline
from prunetune.qa import (
    HELD_OUT,
    evaluate_qa,
    letter_rows,
    letter_token_ids,
    load_qa,
    next_token_logprobs,
    question_messages,
    score_multiple_choice,
    split_membership,
    summarize_qa,
)

EVAL_CFG = {
    "batch_size": 4,
    "max_new_tokens": {"summarization": 6, "title_generation": 6, "tag_extraction": 6, "type_classification": 3},
    "bertscore_model": "minilm",
    "bootstrap_resamples": 200,
    "seed": 0,
}
QA_CFG = {"path": "qa.json", "max_new_tokens": 4, "batch_size": 3, "bootstrap_resamples": 200, "seed": 0}


def test_batched_generation_equals_one_at_a_time(tiny_model):
    model, tokenizer = tiny_model
    prompts = [prompt_ids(tokenizer, e["messages"][:2]) for e in chat_examples(3, max_content_words=5 + 0)]
    prompts = [p[: 20 + 3 * i] for i, p in enumerate(prompts)]  # distinct lengths: real left padding
    batched = generate_greedy(model, tokenizer, prompts, max_new_tokens=8, batch_size=5)
    one_by_one = generate_greedy(model, tokenizer, prompts, max_new_tokens=8, batch_size=1)
    assert [g["text"] for g in batched] == [g["text"] for g in one_by_one]
    assert all(g["hit_max_new_tokens"] == (g["new_tokens"] == 8) for g in batched)


@torch.no_grad()
def test_completion_nll_equals_a_direct_computation_at_any_batch_size(tiny_model):
    model, tokenizer = tiny_model
    rows = [tokenize_chat(tokenizer, e["messages"]) for e in chat_examples(2, max_content_words=8)]
    row = rows[0]
    logprobs = torch.log_softmax(model(torch.tensor([row["input_ids"]])).logits[0, :-1], dim=-1)
    expected = -sum(logprobs[i - 1, token].item() for i, token in enumerate(row["labels"]) if token != -100 and i > 0)
    n_expected = sum(token != -100 for token in row["labels"])
    nll, n = completion_nll(model, rows, batch_size=1)[0]
    assert n == n_expected and nll == pytest.approx(expected, rel=1e-5)
    batched = completion_nll(model, rows, batch_size=8)
    single = completion_nll(model, rows, batch_size=1)
    assert [c for _, c in batched] == [c for _, c in single]
    assert [s for s, _ in batched] == pytest.approx([s for s, _ in single], rel=1e-5)


def test_evaluate_scores_every_task_with_intervals(tiny_model):
    model, tokenizer = tiny_model
    examples = chat_examples(3, max_content_words=10)
    metrics, rows, counts = evaluate(model, tokenizer, examples, examples, EVAL_CFG)
    assert len(rows) == len(examples) and counts["examples"] == {t: 3 for t in counts["examples"]}
    assert metrics["summarization"]["rougeL_ci"][0] <= metrics["summarization"]["rougeL"]
    assert metrics["type_classification"]["majority_baseline"] == pytest.approx(2 / 3)
    tags = [parse_tags(e["messages"][2]["content"]) for e in examples if e["task"] == "tag_extraction"]
    best_tags, best_f1 = constant_tags_baseline(tags, tags)  # train = test here: the set's own train F1
    assert metrics["tag_extraction"]["constant_baseline"] == pytest.approx(best_f1)
    assert counts["constant_tags"] == " | ".join(best_tags)
    direct = torch.exp(torch.tensor(sum(r["nll_sum"] for r in rows) / sum(r["answer_tokens"] for r in rows)))
    assert metrics["perplexity"] == pytest.approx(direct.item(), rel=1e-5)
    low, high = metrics["perplexity_ci"]
    assert low <= metrics["perplexity"] <= high
    # what a model reading nothing scores, per example: the train majority type, the constant tag set
    types = [r for r in rows if r["task"] == "type_classification"]
    majority = counts["majority_label"]
    assert [r["baseline_scores"]["accuracy"] for r in types] == [float(r["reference"] == majority) for r in types]
    assert sum(r["baseline_scores"]["accuracy"] for r in types) / 3 == pytest.approx(2 / 3)
    tag_rows = [r for r in rows if r["task"] == "tag_extraction"]
    assert sum(r["baseline_scores"]["f1"] for r in tag_rows) / 3 == pytest.approx(best_f1)
    assert all("baseline_scores" not in r for r in rows if r["task"] == "summarization")
    # the article text each prompt shows, scored once and carried on each of the article's rows
    first = next(e for e in examples)
    ids = tokenizer(first["messages"][1]["content"].rsplit("\n\n", 1)[0])["input_ids"]
    expected = completion_nll(model, [{"input_ids": ids, "labels": [-100] + ids[1:]}], 1)[0]
    carried = {(r["text_nll_sum"], r["text_tokens"]) for r in rows if r["article_id"] == first["article_id"]}
    assert len(carried) == 1 and next(iter(carried))[1] == len(ids) - 1
    assert next(iter(carried))[0] == pytest.approx(expected[0], rel=1e-5)


def test_baseline_scores_by_hand():
    refs = ["Press Release", "Speech", "press release."]
    assert baseline_scores("type_classification", refs, "Press Release", None) == [
        {"accuracy": 1.0},
        {"accuracy": 0.0},
        {"accuracy": 1.0},  # normalized: case and a trailing period do not count
    ]
    # constant {A, B} against gold {A} -> 2*1/(2+1) = 2/3; against {C} -> 0
    assert baseline_scores("tag_extraction", ["A", "C"], None, ["A", "B"]) == [
        {"f1": pytest.approx(2 / 3)},
        {"f1": 0.0},
    ]
    assert baseline_scores("summarization", ["x"], "Press Release", ["A"]) == [None]


def test_empty_test_split_is_refused(tiny_model):
    model, tokenizer = tiny_model
    with pytest.raises(PrunetuneError, match="test split is empty"):
        evaluate(model, tokenizer, [], [], EVAL_CFG)


def test_tags_with_commas_score_whole():
    reference = "Finance, Facts, Figures | BMW M"
    metrics, per_example = score_task(
        "tag_extraction", [reference, "Finance | Facts"], [reference, reference], {**EVAL_CFG}, []
    )
    assert [s["exact_match"] for s in per_example] == [1.0, 0.0]
    assert per_example[1]["f1"] == 0.0  # "Finance" and "Facts" are fragments, not the tag
    assert metrics["micro_f1"] == pytest.approx(2 / 4)  # TP 2, FP 2, FN 2 -> P = R = 1/2


# ---------------------------------------------------------------- QA


def write_qa(tmp_path, questions):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps({"questions": questions}))
    return path


@torch.no_grad()
def test_mc_question_is_one_forward_pass_over_its_letters(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    options = ["battery plant", "motorsport race team", "art culture", "hydrogen"]
    question = {
        "id": "q",
        "question": "Which?",
        "options": options,
        "answer": options[0],
        "context": "Munich. A plant.",
    }
    loaded = load_qa(write_qa(tmp_path, [question]))
    messages = question_messages(loaded[0])
    assert messages[1]["content"].startswith("Munich. A plant.\n\nWhich?\nA) battery plant")  # open book
    letters = letter_token_ids(tokenizer, messages, 4)
    prompt = prompt_ids(tokenizer, messages)
    # by hand: the model's next-token distribution after the prompt, read at the four letters' first tokens
    direct = torch.log_softmax(model(torch.tensor([prompt])).logits[0, -1], dim=-1)[letters].tolist()
    assert next_token_logprobs(model, [prompt, prompt[:-3]], [letters, letters], 2)[0] == pytest.approx(direct, 1e-5)
    calls = []
    hook = model.model.layers[0].register_forward_hook(lambda *args: calls.append(1))
    record = evaluate_qa(model, tokenizer, loaded, QA_CFG)[1][0]
    hook.remove()
    assert len(calls) == 1  # one question, one forward pass (no generation, no per-option rows)
    assert record["letter_logliks"] == pytest.approx(direct, 1e-5)
    best = max(range(4), key=lambda i: direct[i])
    assert record["correct"] == (best == 0) and record["picked"] == "ABCD"[best]
    assert record["gold_avg_loglik"] == pytest.approx(direct[0], 1e-5)


def test_letter_scoring_picks_the_most_likely_letter():
    scored = score_multiple_choice([-2.0, -0.5, -3.0, -4.0], gold=1)
    assert scored["letter_correct"] is True and scored["picked"] == "B" and scored["gold_avg_loglik"] == -0.5
    assert score_multiple_choice([-2.0, -0.5, -3.0, -4.0], gold=0)["letter_correct"] is False


def test_letter_rows_score_only_the_letter(tiny_model):
    model, tokenizer = tiny_model
    messages = question_messages({"question": "Which?", "category": "multiple_choice", "options": ["x", "y", "z"]})
    rows = letter_rows(tokenizer, messages, 3)
    prompt = prompt_ids(tokenizer, messages)
    for letter, row in zip("ABC", rows, strict=True):
        assert row["input_ids"][: len(prompt)] == prompt  # the assistant turn opens right after the options
        scored = [t for t in row["labels"] if t != -100]
        # the scored tokens are the letter as the assistant's first tokens; the end-of-turn suffix is not scored
        assert tokenizer.decode(scored).strip() == letter
        assert row["labels"].index(scored[0]) == len(prompt)


def test_qa_headline_is_the_letter_and_held_out(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    options = ["battery plant", "motorsport race team", "art culture", "hydrogen"]
    questions = [
        {"id": "q1", "question": "Which?", "options": options, "answer": options[0], "article_id": "art_test"},
        {"id": "q2", "question": "Where?", "answer": "Munich", "article_id": "art_train"},
        {"id": "q3", "question": "Who?", "answer": "Rast"},  # no article_id: split unknown
    ]
    membership = {"art_test": "test", "art_train": "train"}
    metrics, records = evaluate_qa(model, tokenizer, load_qa(write_qa(tmp_path, questions)), QA_CFG, membership)
    mc = records[0]
    assert mc["correct"] == mc["letter_correct"]
    best_letter = max(range(4), key=lambda i: mc["letter_logliks"][i])
    assert mc["letter_correct"] == (best_letter == 0)
    assert "generated" in records[1] and "generated" not in mc  # generation only for factual questions
    assert [r["split"] for r in records] == ["test", "train", "unknown"]
    assert [r["in_headline"] for r in records] == [True, False, False]
    # the headline is the one held-out question; accuracy_all covers all three
    assert metrics["n_headline"] == 1 and metrics["headline_set"].startswith("held_out")
    assert metrics["accuracy"] == float(mc["correct"])
    assert metrics["n"] == 3 and set(metrics["by_split"]) == {"test", "train", "unknown"}
    assert "LETTER" in metrics["scoring"]["accuracy"] and metrics["chance"] == 0.25


def test_qa_headline_has_an_exact_interval_and_a_test_against_chance():
    # 0 of 8 four-option questions right: the bootstrap gives [0, 0]; Clopper-Pearson's upper end solves
    # (1 - p)^8 = 0.025, p = 1 - 0.025^(1/8) = 0.3694; against chance 0.25 the exact two-sided p sums every
    # outcome no likelier than P(0) = 0.75^8 = 0.1001: P(0) + P(4..8) = 0.1001 + 0.1138 = 0.2139
    records = [
        {"id": str(i), "category": "multiple_choice", "difficulty": "date", "split": "test", "correct": False}
        for i in range(8)
    ]
    for record in records:
        record.update(letter_correct=False, gold_avg_loglik=-1.0, n_options=4)
    metrics = summarize_qa(records, QA_CFG)
    assert metrics["accuracy"] == 0.0 and metrics["accuracy_ci"] == [0.0, 0.0]
    assert metrics["accuracy_ci_exact"] == pytest.approx([0.0, 1 - 0.025 ** (1 / 8)])
    tail = sum(math.comb(8, k) * 0.25**k * 0.75 ** (8 - k) for k in range(4, 9))
    assert metrics["p_vs_chance"] == pytest.approx(0.75**8 + tail) and metrics["p_vs_chance"] == pytest.approx(
        0.2139, abs=1e-4
    )
    assert metrics["chance"] == 0.25


def test_qa_headline_falls_back_to_all_questions_when_none_is_held_out():
    records = [
        {"id": "1", "category": "factual", "difficulty": "easy", "split": "train", "correct": True},
        {"id": "2", "category": "factual", "difficulty": "easy", "split": "unknown", "correct": False},
    ]
    for record in records:
        record["gold_avg_loglik"] = -1.0
    metrics = summarize_qa(records, QA_CFG)
    assert metrics["accuracy"] == 0.5 and metrics["n_headline"] == 2 and metrics["headline_set"].startswith("all")


def test_split_membership_is_read_from_the_split_files(tmp_path):
    for split, ids in (("train", ["a", "b"]), ("val", ["c"]), ("test", ["d"])):
        rows = [{"article_id": i, "task": t} for i in ids for t in ("summarization", "title_generation")]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = {split: tmp_path / f"{split}.jsonl" for split in ("train", "val", "test")}
    assert split_membership(paths) == {"a": "train", "b": "train", "c": "val", "d": "test"}
    assert set(HELD_OUT) == {"val", "test"}
    (tmp_path / "val.jsonl").unlink()
    with pytest.raises(PrunetuneError, match="val.jsonl: not found; run the split stage"):
        split_membership(paths)


def test_reference_20_question_format_loads(tmp_path):
    questions = []
    for i in range(20):
        if i % 2:
            questions.append(
                {"id": i + 1, "category": "factual", "question": f"Q{i}?", "answer": "Munich", "difficulty": "easy"}
            )
        else:
            questions.append(
                {
                    "id": i + 1,
                    "category": "multiple_choice",
                    "question": f"Q{i}?",
                    "options": ["Munich", "Leipzig", "Debrecen", "Oxford"],
                    "answer": "Leipzig",
                    "difficulty": "hard",
                }
            )
    loaded = load_qa(write_qa(tmp_path, questions))
    assert len(loaded) == 20 and loaded[0]["answer_index"] == 1 and loaded[1]["id"] == "2"
    assert all(q["article_id"] is None for q in loaded)  # the optional source article: absent is fine


def test_option_letters_and_mappings_are_understood(tmp_path):
    question = {"id": 1, "question": "Which?", "options": {"A": "x", "B": "y"}, "answer": "B"}
    loaded = load_qa(write_qa(tmp_path, [question]))[0]
    assert loaded["options"] == ["x", "y"] and loaded["answer_index"] == 1 and loaded["category"] == "multiple_choice"


def test_heldout_qa_set_is_open_book_four_option_and_large():
    questions = load_qa("data/sample/qa_heldout.json")
    assert len(questions) >= 200  # a +-0.06 binomial interval
    assert all(q["category"] == "multiple_choice" and len(q["options"]) == 4 and q["context"] for q in questions)
    articles = {article_id(json.loads(line)) for line in open("data/sample/articles.jsonl", encoding="utf-8")}
    assert all(q["article_id"] in articles for q in questions)
    positions = [q["answer_index"] for q in questions]
    assert max(positions.count(i) for i in range(4)) - min(positions.count(i) for i in range(4)) <= 1


def test_sample_qa_set_loads():
    questions = load_qa("data/sample/qa.json")
    assert len(questions) >= 24
    assert {q["category"] for q in questions} == {"multiple_choice", "factual"}
    # every question names the sample article it was written from
    articles = {article_id(json.loads(line)) for line in open("data/sample/articles.jsonl", encoding="utf-8")}
    assert all(q["article_id"] in articles for q in questions)


@pytest.mark.parametrize(
    ("questions", "problem"),
    [
        ([], "at least one question"),
        ([{"id": "a", "question": "Q?", "category": "factual"}], "question 'a': missing answer"),
        (
            [{"id": "b", "question": "Q?", "options": ["x", "y"], "answer": "x", "answer_index": 2}],
            "answer_index 2 is out of range",
        ),
        (
            [{"id": "c", "question": "Q?", "options": ["x", "y"], "answer": "z"}],
            "neither an option nor an option letter",
        ),
        ([{"id": "d", "question": "Q?", "answer": "x", "category": "essay"}], "category must be one of"),
        ([{"id": "e", "question": "Q?", "answer": "x", "article_id": 7}], "question 'e': article_id must be"),
    ],
)
def test_bad_qa_files_name_the_question(tmp_path, questions, problem):
    with pytest.raises(PrunetuneError, match=problem):
        load_qa(write_qa(tmp_path, questions))


def test_answer_and_answer_index_that_disagree_are_refused(tmp_path):
    question = {"id": "q", "question": "Which?", "options": ["x", "y", "z"], "answer": "x", "answer_index": 2}
    with pytest.raises(PrunetuneError, match=r"question 'q': answer 'x' and answer_index 2 \(C\) 'z' disagree"):
        load_qa(write_qa(tmp_path, [question]))
    for agreeing in ("z", "C", "c"):  # the option text, or its letter
        loaded = load_qa(write_qa(tmp_path, [{**question, "answer": agreeing}]))[0]
        assert loaded["answer_index"] == 2 and loaded["answer"] == agreeing


def test_answer_index_without_answer_is_accepted(tmp_path):
    question = {"id": "q", "question": "Which?", "options": ["x", "y", "z"], "answer_index": 1}
    loaded = load_qa(write_qa(tmp_path, [question]))[0]
    assert loaded["answer_index"] == 1 and loaded["answer"] == "y" and loaded["category"] == "multiple_choice"
    factual = {"id": "f", "question": "Where?", "category": "factual", "answer_index": 1}
    with pytest.raises(PrunetuneError, match="question 'f': missing answer"):
        load_qa(write_qa(tmp_path, [factual]))


def test_split_file_cut_mid_line_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"article_id": "a"}\n{"article_id": "b"}\n{"article_id": "c", "ta\n')
    with pytest.raises(PrunetuneError, match=r"train\.jsonl:3: malformed JSON .*dvc repro"):
        split_membership({"train": path})
