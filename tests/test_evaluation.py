import json

import pytest
import torch
from conftest import chat_examples

from prunetune.config import PrunetuneError
from prunetune.evaluation import evaluate, score_task
from prunetune.generation import completion_nll, generate_greedy, prompt_ids
from prunetune.qa import evaluate_qa, load_qa
from prunetune.training import tokenize_chat

EVAL_CFG = {
    "batch_size": 4,
    "max_new_tokens": {"summarization": 6, "title_generation": 6, "tag_extraction": 6, "type_classification": 3},
    "bertscore_model": "minilm",
    "bootstrap_resamples": 200,
    "seed": 0,
}
QA_CFG = {"max_new_tokens": 4, "batch_size": 3, "bootstrap_resamples": 200, "seed": 0}


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
    direct = torch.exp(torch.tensor(sum(r["nll_sum"] for r in rows) / sum(r["answer_tokens"] for r in rows)))
    assert metrics["perplexity"] == pytest.approx(direct.item(), rel=1e-5)
    low, high = metrics["perplexity_ci"]
    assert low <= metrics["perplexity"] <= high


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


def test_mc_ranking_picks_the_option_the_model_finds_most_likely(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    options = ["battery plant", "motorsport race team", "art culture", "hydrogen"]
    question = {
        "id": "q",
        "category": "multiple_choice",
        "question": "Which?",
        "options": options,
        "answer": options[0],
    }
    records = evaluate_qa(model, tokenizer, load_qa(write_qa(tmp_path, [question])), QA_CFG)[1]
    most_likely = max(range(4), key=lambda i: records[0]["option_logliks"][i])
    for answer_index in range(4):
        question["answer"] = options[answer_index]
        record = evaluate_qa(model, tokenizer, load_qa(write_qa(tmp_path, [question])), QA_CFG)[1][0]
        assert record["loglik_correct"] == (answer_index == most_likely)


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


def test_option_letters_and_mappings_are_understood(tmp_path):
    question = {"id": 1, "question": "Which?", "options": {"A": "x", "B": "y"}, "answer": "B"}
    loaded = load_qa(write_qa(tmp_path, [question]))[0]
    assert loaded["options"] == ["x", "y"] and loaded["answer_index"] == 1 and loaded["category"] == "multiple_choice"


def test_sample_qa_set_loads():
    questions = load_qa("data/sample/qa.json")
    assert len(questions) >= 24
    assert {q["category"] for q in questions} == {"multiple_choice", "factual"}


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
    ],
)
def test_bad_qa_files_name_the_question(tmp_path, questions, problem):
    with pytest.raises(PrunetuneError, match=problem):
        load_qa(write_qa(tmp_path, questions))
