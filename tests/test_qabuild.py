"""The open-book QA generator: facts read from each passage, distractors from other articles, one right answer."""

import json

import pytest

from prunetune.cli import main
from prunetune.qa import load_qa
from prunetune.qabuild import build_questions, one_right_answer, passage

CITIES = ["Munich", "Leipzig", "Debrecen", "Oxford", "Goodwood"]


def article(i: int, city: str, model: str, figure: str) -> tuple:
    raw = {"date": f"0{i + 1}.02.2024", "title": f"Headline number {i}"}
    content = f"{city}. The BMW Group shows the {model} with {figure}. Check against nothing."
    return ("test", f"art{i}", raw, content)


ARTICLES = [
    article(0, "Munich", "BMW iX3", "250 kW"),
    article(1, "Leipzig", "MINI Countryman", "30 percent"),
    article(2, "Debrecen", "BMW i4", "1,000 employees"),
    article(3, "Oxford", "BMW M4", "600 million"),
    article(4, "Goodwood", "Rolls-Royce Spectre", "150,000 vehicles"),
]


def test_questions_by_hand():
    questions = build_questions(ARTICLES, seed=0)
    kinds = {q["difficulty"] for q in questions}
    assert kinds == {"dateline", "date", "title", "model", "figure"}
    assert len(questions) == 5 * 5  # every kind of every article has 4 other articles to draw 3 distractors from
    first = next(q for q in questions if q["id"] == "art0-dateline")
    assert first["answer"] == "Munich" and first["options"][first["answer_index"]] == "Munich"
    assert set(first["options"]) <= set(CITIES)  # distractors: other articles' datelines
    assert first["context"] == "Published 01.02.2024.\n\nMunich. The BMW Group shows the BMW iX3 with 250 kW. " + (
        "Check against nothing."
    )
    model = next(q for q in questions if q["id"] == "art2-model")
    assert model["answer"] == "BMW i4" and "BMW i4" in model["context"]
    assert sum(option in model["context"] for option in model["options"]) == 1
    # right answers spread over the letters: 25 questions -> 7, 6, 6, 6
    assert sorted([q["answer_index"] for q in questions].count(i) for i in range(4)) == [6, 6, 6, 7]
    assert build_questions(ARTICLES, seed=0) == questions  # seeded
    assert build_questions(ARTICLES, seed=1) != questions


def test_a_question_needs_three_distractors():
    # with three articles only two distractors exist per kind: no question can have four options
    assert build_questions(ARTICLES[:3]) == []


def test_one_right_answer_check():
    text = passage({"date": "01.02.2024"}, "Munich. Built in Leipzig.")
    assert one_right_answer("dateline", ["Munich", "Oxford", "Debrecen", "Goodwood"], 0, text)
    assert not one_right_answer("dateline", ["Munich", "Leipzig", "Debrecen", "Goodwood"], 0, text)  # two present
    assert not one_right_answer("dateline", ["Oxford", "Munich", "Debrecen", "Goodwood"], 0, text)  # wrong one
    assert not one_right_answer("date", ["01.02.2024", "01.02.2024", "x", "y"], 0, text)  # not distinct
    # a word inside another does not count: "Spa" is not in "Spain" but is in "Spa-Francorchamps"
    assert one_right_answer("dateline", ["Munich", "Spa", "Oxford", "Goodwood"], 0, text + " Spain.")
    assert not one_right_answer("dateline", ["Munich", "Spa", "Oxford", "Goodwood"], 0, text + " Spa-Francorchamps")


def test_cli_writes_a_loadable_file(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "articles.jsonl"
    rows = []
    for i in range(60):
        city, model = CITIES[i % 5], ["BMW iX3", "BMW i4", "MINI Countryman", "BMW M4", "BMW X5"][i % 5]
        rows.append(
            {
                "title": f"Title {i}",
                "date": f"{i % 28 + 1:02d}.0{i % 9 + 1}.2024",
                "type": "Press Release",
                "summary": f"Summary {i}.",
                "tags": ["Production"],
                "url": f"https://example.com/{i}",
                "content": f"{city}. Article {i} shows the {model} with {i + 10} kW, word{i} "
                + " ".join(f"w{i}x{j}" for j in range(30)),
            }
        )
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data:\n  source: {corpus}\n  types: [Press Release]\n  exclude_types: []\n  val_fraction: 0.2\n"
        "  test_fraction: 0.3\n  max_content_words: 20\n  near_duplicate_jaccard: 0.8\n  seed: 1\n"
    )
    out = tmp_path / "qa.json"
    main(["qa-build", "--params", str(params), "--out", str(out)])
    assert "questions from 30 held-out articles" in capsys.readouterr().out
    questions = load_qa(out)
    assert len(questions) >= 150 and all(len(q["options"]) == 4 for q in questions)
    with pytest.raises(SystemExit):  # too few held-out articles for a QA set with power: one line, exit 1
        params.write_text(params.read_text().replace("test_fraction: 0.3", "test_fraction: 0.05"))
        params.write_text(params.read_text().replace("val_fraction: 0.2", "val_fraction: 0.05"))
        main(["qa-build", "--params", str(params), "--out", str(out)])
    assert "qa-build: only" in capsys.readouterr().err
