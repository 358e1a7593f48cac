import json
from collections import Counter

import pytest
from conftest import data_cfg, make_article, write_corpus

from prunetune.config import PrunetuneError
from prunetune.corpus import read_articles
from prunetune.data import (
    TASKS,
    article_content,
    article_id,
    build_examples,
    clean_content,
    deduplicate,
    order_tags,
    parse_tags,
    prepare_corpus,
    render_tags,
    split_articles,
    tag_ranks,
)
from prunetune.jsonio import read_json, read_jsonl, write_jsonl

TYPES = ["Press Release", "Press Kit", "Speech", "Fact & Figures"]


# ---------------------------------------------------------------- tags


def test_tags_with_commas_survive_a_round_trip():
    tags = ["Finance, Facts, Figures", "Production, Recycling", "BMW M"]
    assert parse_tags(render_tags(tags)) == tags
    assert render_tags(tags).count("|") == 2


def test_parse_tags_tolerates_spacing_and_empty_pieces():
    assert parse_tags("A, B |C||  D ") == ["A, B", "C", "D"]
    assert parse_tags("") == []


def test_tags_round_trip_through_the_examples(tmp_path):
    article = make_article(1, tags=["Finance, Facts, Figures", "Sustainability"])
    examples, _ = build_examples(article, ["Press Release"])
    tag_example = next(e for e in examples if e["task"] == "tag_extraction")
    assert parse_tags(tag_example["messages"][2]["content"]) == article["tags"]


def test_tag_ranks_count_articles_and_break_ties_alphabetically():
    articles = [{"tags": ["B", "A"]}, {"tags": [" A", "C"]}, {"tags": ["C", "A", "D"]}]
    # A: 3 articles, C: 2, then B and D with 1 each (alphabetical)
    assert tag_ranks(articles) == {"A": 0, "C": 1, "B": 2, "D": 3}


def test_order_tags_puts_unknown_tags_last_alphabetically():
    ranks = {"A": 0, "C": 1, "B": 2}
    assert order_tags(["Z", "B", "Y", "A", "C"], ranks) == ["A", "C", "B", "Y", "Z"]
    assert order_tags([], ranks) == []


def test_tag_answer_follows_the_ranking_when_given():
    article = make_article(1, tags=["Sustainability ", "Finance, Facts, Figures", "BMW M"])
    ranks = {"BMW M": 0, "Sustainability": 1}

    def tag_answer(**kwargs):
        examples, _ = build_examples(article, ["Press Release"], **kwargs)
        return next(e for e in examples if e["task"] == "tag_extraction")["messages"][2]["content"]

    assert tag_answer(tag_ranks=ranks) == "BMW M | Sustainability | Finance, Facts, Figures"
    assert tag_answer() == "Sustainability | Finance, Facts, Figures | BMW M"  # as the article lists them


@pytest.mark.parametrize("tag_order", ["frequency", "source"])
def test_tag_order_is_ranked_on_the_train_split_only(tmp_path, tag_order):
    # every article lists "Rare" before "Common"; one article's "Only Here" tag ranks only if it lands in train
    articles = [make_article(i, tags=["Rare", "Common"] if i % 3 == 0 else ["Common"]) for i in range(20)]
    articles[7]["tags"] = ["Only Here", "Common"]
    examples, report = prepare_corpus(data_cfg(write_corpus(tmp_path / "a.jsonl", articles), tag_order=tag_order))
    train_articles = {e["article_id"] for e in examples["train"]}
    answers = {e["messages"][2]["content"] for rows in examples.values() for e in rows if e["task"] == "tag_extraction"}
    if tag_order == "source":
        assert report["tag_order"] == "source"
        assert "Rare | Common" in answers
        return
    in_train = [a for a in articles if article_id(a) in train_articles]
    assert report["tag_order"] == list(tag_ranks(in_train))
    assert report["tag_order"][0] == "Common"
    assert ("Only Here" in report["tag_order"]) == (article_id(articles[7]) in train_articles)
    assert "Common | Rare" in answers and "Rare | Common" not in answers


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"title": "x", broken', "malformed JSON"),
        (
            json.dumps({k: v for k, v in make_article(9).items() if k != "summary"}).encode(),
            "missing field 'summary'",
        ),
        (json.dumps(make_article(9, tags="A, B")).encode(), "field 'tags' must be a list"),
        (json.dumps(make_article(9, content="   ")).encode(), "field 'content' is empty"),
        (json.dumps(make_article(9, type="Blog Post")).encode(), "unknown type 'Blog Post'"),
        (json.dumps(make_article(9, date="2024-01-05")).encode(), "field 'date' must be DD.MM.YYYY"),
        (json.dumps(make_article(9, tags=["A | B"])).encode(), "contains '|'"),
        (b'{"title": "caf\xe9"}', "not valid UTF-8 (byte 0xe9"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_line_fails_naming_file_and_line(tmp_path, line, problem):
    path = write_corpus(tmp_path / "a.jsonl", [make_article(0), make_article(1)], [line])
    with pytest.raises(PrunetuneError) as err:
        read_articles(path, TYPES, on_error="fail")
    message = str(err.value)
    assert f"{path}:3:" in message and problem in message
    assert "\n" not in message


def test_skip_drops_and_counts_every_bad_line(tmp_path):
    bad = [b"{nope", json.dumps(make_article(7, type="Blog")).encode()]
    path = write_corpus(tmp_path / "a.jsonl", [make_article(i) for i in range(3)], bad)
    loaded = read_articles(path, TYPES, on_error="skip")
    assert len(loaded.articles) == 3
    assert [item["line"] for item in loaded.invalid] == [4, 5]
    assert loaded.lines == 5


def test_unknown_on_error_value_names_the_param(tmp_path):
    path = write_corpus(tmp_path / "a.jsonl", [make_article(0)])
    with pytest.raises(PrunetuneError, match="data.on_error"):
        read_articles(path, TYPES, on_error="ignore")


def test_missing_corpus_file_is_named(tmp_path):
    with pytest.raises(PrunetuneError, match="corpus file not found"):
        read_articles(tmp_path / "none.jsonl", TYPES)


def test_corpus_path_naming_a_directory_says_so(tmp_path):
    with pytest.raises(PrunetuneError, match=f"^{tmp_path}: is a directory; data.source must name a JSONL file$"):
        read_articles(tmp_path, TYPES)


def test_a_truncated_split_file_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [{"a": 1}, {"a": 2}])
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    path.write_bytes(path.read_bytes()[:-4])  # cut mid-line, as a killed write or a full disk leaves it
    with pytest.raises(PrunetuneError, match=rf"^{path}:2: malformed JSON \(.*\).*rerun the stage that writes it"):
        read_jsonl(path)
    (tmp_path / "m.json").write_text('{"a": [1,\n')
    with pytest.raises(PrunetuneError, match=r"m\.json:2: malformed JSON"):
        read_json(tmp_path / "m.json")
    with pytest.raises(PrunetuneError, match=r"none\.jsonl: not found; run the stage that writes it first"):
        read_jsonl(tmp_path / "none.jsonl")


# ---------------------------------------------------------------- cleaning


def test_cleaning_removes_contacts_urls_emails_phones_and_boilerplate():
    text = (
        "The new model arrives in spring. Details at https://www.bmw.com/new-model/index.html.\n\n"
        "Write to press@bmwgroup.com or call +49 89 382-12345 for images.\n\n"
        "For further questions please contact:\nJane Doe\nSpokesperson\nTelephone: +49 89 382-54321\n"
        "E-mail: jane.doe@bmwgroup.com\n\nMedia website: www.press.bmwgroup.com\n\n"
        "The BMW Group\nWith its four brands BMW, MINI, Rolls-Royce and BMW Motorrad, the BMW Group is ..."
    )
    cleaned, removed = clean_content(text)
    assert cleaned == "The new model arrives in spring. Details at.\n\nWrite to or call for images."
    assert removed["contact_blocks"] == 1
    assert removed["urls"] == 1 and removed["emails"] == 1 and removed["phones"] == 1


def test_cleaning_keeps_ordinary_numbers():
    text = "Sales rose to 2,554,183 vehicles in 2024, with 426,594 electrified (plus 13.5 percent)."
    cleaned, removed = clean_content(text)
    assert cleaned == text
    assert sum(removed.values()) == 0


def test_boilerplate_without_contact_block_is_removed():
    text = "Body text here.\n\nThe BMW Group\nWith its four brands BMW, MINI, Rolls-Royce and BMW Motorrad, more."
    cleaned, removed = clean_content(text)
    assert cleaned == "Body text here." and removed["boilerplate"] == 1


# ---------------------------------------------------------------- duplicates


def _with_line(articles):
    return [{**a, "line": i + 1} for i, a in enumerate(articles)]


def test_exact_duplicate_dropped_even_with_different_whitespace_and_case():
    first = make_article(1)
    copy = make_article(2, content=first["content"].upper().replace(" ", "  "))
    kept, dropped = deduplicate(_with_line([first, copy, make_article(3)]), 0.8)
    assert [a["line"] for a in kept] == [1, 3]
    assert dropped == [{"line": 2, "reason": "exact_duplicate", "of_line": 1}]


def test_same_url_is_an_exact_duplicate():
    first = make_article(1)
    kept, dropped = deduplicate(_with_line([first, make_article(2, url=first["url"])]), 0.8)
    assert len(kept) == 1 and dropped[0]["reason"] == "exact_duplicate"


def test_near_duplicate_dropped_distinct_article_kept():
    first = make_article(1)
    words = first["content"].split()
    near = make_article(2, content=" ".join(words[:-3] + ["new", "closing", "words"]))
    kept, dropped = deduplicate(_with_line([first, near, make_article(3)]), 0.8)
    assert [a["line"] for a in kept] == [1, 3]
    assert dropped[0]["reason"] == "near_duplicate" and dropped[0]["of_line"] == 1
    assert 0.8 <= dropped[0]["jaccard"] < 1


# ---------------------------------------------------------------- split


def _corpus(n_release=40, n_kit=10, n_speech=10):
    types = ["Press Release"] * n_release + ["Press Kit"] * n_kit + ["Speech"] * n_speech
    return [{**make_article(i, type=t), "line": i + 1} for i, t in enumerate(types)]


def test_split_is_by_article_and_covers_every_article_once():
    articles = _corpus()
    splits = split_articles(articles, 0.2, 0.2, seed=3)
    ids = [article_id(a) for members in splits.values() for a in members]
    assert len(ids) == len(set(ids)) == len(articles)


def test_split_is_stratified_by_type():
    splits = split_articles(_corpus(), 0.2, 0.2, seed=3)
    for name, expected in (("test", 12), ("val", 12), ("train", 36)):
        counts = Counter(a["type"] for a in splits[name])
        assert sum(counts.values()) == expected
        # each type in the corpus's proportion 4:1:1
        assert counts["Press Release"] == 4 * counts["Press Kit"] == 4 * counts["Speech"]


def test_split_depends_on_seed_only():
    articles = _corpus()
    first = split_articles(articles, 0.2, 0.2, seed=3)
    again = split_articles(list(reversed(articles)), 0.2, 0.2, seed=3)
    other = split_articles(articles, 0.2, 0.2, seed=4)
    ids = {name: sorted(article_id(a) for a in members) for name, members in first.items()}
    assert ids == {name: sorted(article_id(a) for a in members) for name, members in again.items()}
    assert ids != {name: sorted(article_id(a) for a in members) for name, members in other.items()}


def test_examples_store_task_and_article_id():
    article = make_article(5, type="Speech")
    examples, skipped = build_examples(article, ["Press Release", "Speech"])
    assert [e["task"] for e in examples] == list(TASKS) and skipped == []
    assert {e["article_id"] for e in examples} == {article_id(article)}
    assert all(article_content(e) == article["content"] for e in examples)
    type_example = examples[-1]
    assert "Press Release, Speech" in type_example["messages"][1]["content"]
    assert type_example["messages"][2]["content"] == "Speech"


def test_article_without_tags_or_summary_yields_fewer_examples():
    examples, skipped = build_examples(make_article(5, tags=[], summary=" "), ["Press Release"])
    assert [e["task"] for e in examples] == ["title_generation", "type_classification"]
    assert skipped == ["summarization", "tag_extraction"]


def test_prepare_corpus_counts_every_drop_and_is_byte_identical(tmp_path):
    articles = [make_article(i, type=TYPES[i % 3]) for i in range(30)]
    articles.append(make_article(30, content=articles[0]["content"]))  # exact duplicate
    articles.append(make_article(31, type="Fact & Figures"))  # excluded type
    articles.append(make_article(32, content="Contact:\nJohn Doe\nPhone: +49 89 382-11111"))  # empty once cleaned
    articles.append(make_article(33, tags=[]))  # no tag example
    path = write_corpus(tmp_path / "a.jsonl", articles, [b"not json", b""])
    cfg = data_cfg(path, on_error="skip")
    examples, report = prepare_corpus(cfg)

    assert report["lines"] == 36 and report["blank_lines"] == 1
    assert report["dropped"] == {
        "empty_after_cleaning": 1,
        "exact_duplicate": 1,
        "excluded_type": 1,
        "invalid": 1,
    }
    assert report["articles_kept"] == 31
    assert report["lines"] - report["blank_lines"] == report["articles_kept"] + sum(report["dropped"].values())
    assert sum(s["total"] for s in report["articles_per_split"].values()) == 31
    assert sum(s["total"] for s in report["examples_per_split"].values()) == 31 * 4 - 1
    assert sum(sum(c.values()) for c in report["examples_skipped_empty_answer"].values()) == 1
    split_of = {e["article_id"]: name for name, rows in examples.items() for e in rows}
    for name, rows in examples.items():
        assert all(split_of[e["article_id"]] == name for e in rows)

    def written():
        again, _ = prepare_corpus(cfg)
        out = tmp_path / "out"
        for name, rows in again.items():
            write_jsonl(out / f"{name}.jsonl", rows)
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}

    assert written() == written()


def test_bad_data_params_are_named(tmp_path):
    path = write_corpus(tmp_path / "a.jsonl", [make_article(0)])
    for overrides, param in (
        ({"val_fraction": -0.1}, "data.val_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "data.val_fraction + data.test_fraction"),
        ({"exclude_types": ["Blog"]}, "data.exclude_types"),
        ({"near_duplicate_jaccard": 0}, "data.near_duplicate_jaccard"),
        ({"seed": "x"}, "data.seed"),
    ):
        with pytest.raises(PrunetuneError, match=param.replace("+", r"\+")):
            prepare_corpus(data_cfg(path, **overrides))


def test_prompt_content_is_cut_at_max_content_words():
    article = make_article(5, content="One two three.\n\nFour five six seven.")
    examples, _ = build_examples(article, ["Press Release"], max_content_words=4)
    assert all(article_content(e) == "One two three.\n\nFour" for e in examples)
    examples, _ = build_examples(article, ["Press Release"], max_content_words=None)
    assert article_content(examples[0]) == article["content"]
