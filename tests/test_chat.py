"""prunetune.chat: one rendering for every stage, the chat template's date fixed by data.chat_date."""

import copy
import datetime as real_datetime
from pathlib import Path

import pytest
import yaml
from conftest import make_article
from transformers.utils import chat_template_utils

from prunetune.chat import DEFAULT_CHAT_DATE, IGNORE_INDEX, prompt_ids, render, tokenize_chat
from prunetune.config import PrunetuneError
from prunetune.params import DataParams
from prunetune.tiny import LLAMA3_DATED_TEMPLATE, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [
    {"role": "system", "content": "You are an assistant."},
    {"role": "user", "content": "Munich. The plant opens.\n\nName the place."},
    {"role": "assistant", "content": "Munich"},
]


@pytest.fixture(scope="module")
def dated_tokenizer():
    """A byte-level tokenizer with Llama 3.x's dated system header (today's date unless date_string is passed)."""
    tokenizer = copy.deepcopy(train_tokenizer([make_article(i)["content"] for i in range(10)], 400))
    tokenizer.chat_template = LLAMA3_DATED_TEMPLATE
    return tokenizer


def on_day(monkeypatch, year: int, month: int, day: int) -> None:
    """Make the templates' strftime_now (transformers' datetime.now()) see this day."""

    class Frozen(real_datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(year, month, day, 12, 0, 0)

    monkeypatch.setattr(chat_template_utils, "datetime", Frozen)


def test_the_template_alone_follows_the_calendar(dated_tokenizer, monkeypatch):
    """The defect: without date_string the same chat renders differently on two days (so the mock bites)."""
    on_day(monkeypatch, 2025, 1, 6)
    monday = dated_tokenizer.apply_chat_template(MESSAGES, tokenize=True)["input_ids"]
    text = dated_tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    on_day(monkeypatch, 2025, 1, 7)
    tuesday = dated_tokenizer.apply_chat_template(MESSAGES, tokenize=True)["input_ids"]
    assert "Today Date: 06 Jan 2025" in text
    assert monday != tuesday


def test_chat_gives_the_same_ids_on_any_day(dated_tokenizer, monkeypatch):
    on_day(monkeypatch, 2025, 1, 6)
    first = (tokenize_chat(dated_tokenizer, MESSAGES, "26 Jul 2024"), prompt_ids(dated_tokenizer, MESSAGES[:2]))
    on_day(monkeypatch, 2031, 12, 31)
    second = (tokenize_chat(dated_tokenizer, MESSAGES, "26 Jul 2024"), prompt_ids(dated_tokenizer, MESSAGES[:2]))
    assert first == second
    assert "Today Date: 26 Jul 2024\n" in dated_tokenizer.decode(first[0]["input_ids"])
    assert "Today Date: 26 Jul 2024\n" in render(dated_tokenizer, MESSAGES, DEFAULT_CHAT_DATE, tokenize=False)


def test_the_date_param_is_what_the_prompt_shows(dated_tokenizer):
    row = tokenize_chat(dated_tokenizer, MESSAGES, "01 Mar 2030")
    text = dated_tokenizer.decode(row["input_ids"])
    assert "Today Date: 01 Mar 2030\n" in text and "26 Jul 2024" not in text
    answer = [t for t in row["labels"] if t != IGNORE_INDEX]
    assert dated_tokenizer.decode(answer) == "Munich<|eot_id|>"  # the mask still finds the answer after the header


def test_chat_date_param_default_and_checks():
    data = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    without = {k: v for k, v in data.items() if k != "chat_date"}
    assert DataParams.parse(without).chat_date == DEFAULT_CHAT_DATE
    assert DataParams.parse({**data, "chat_date": "1 Jan 2025"}).chat_date == "1 Jan 2025"
    for bad in (20240726, "", None):
        with pytest.raises(PrunetuneError, match=r"params.yaml: data.chat_date must be a date"):
            DataParams.parse({**data, "chat_date": bad})


@pytest.mark.parametrize(
    "path", ["params.yaml", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("configs/*.yaml"))]
)
def test_every_config_fixes_the_date(path):
    params = yaml.safe_load((ROOT / path).read_text())
    assert params["data"]["chat_date"] == DataParams.parse(params["data"], path).chat_date == DEFAULT_CHAT_DATE


def test_evaluation_and_qa_do_not_load_the_training_libraries():
    """Eval imports the chat rendering from chat.py, not training.py (which pulls in TRL and peft)."""
    import subprocess
    import sys

    code = "import sys, prunetune.evaluation, prunetune.qa; print(sorted({'trl', 'peft'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("stage", ["base", "finetune_full", "finetune_pruned", "eval", "qa"])
def test_every_stage_that_renders_chats_reruns_when_the_date_changes(stage):
    body = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    body = body.get("do", body)
    assert "data.chat_date" in body["params"] and "prunetune/chat.py" in body["deps"]
