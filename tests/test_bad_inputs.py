"""Issue #30: every bad input answered in one line, no hang, no lost data, a resume that cannot get stuck.

One test (or a few) per cause of the issue, each feeding the bad input and asserting the one-line message, the
refusal or the fallback."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import data_cfg, make_article, write_corpus
from conftest import run_finetune as finetune_into

from prunetune.config import PrunetuneError

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    """`prunetune ARGS` in a subprocess, as a user runs it."""
    command = [sys.executable, "-c", "from prunetune.cli import main; main()", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str, status: int = 1) -> str:
    """The run ended with `status` and exactly one `error:` line on stderr holding every fragment, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ---------------------------------------------------------------- 1. the split's cleaning is linear


@pytest.mark.parametrize(
    "text",
    [
        "a" * 5_000_000,  # one 5 MB token: the e-mail pattern backtracked quadratically (200 kB hung > 240 s)
        "a." * 2_500_000,
        "http://" + "." * 2_000_000 + "a",  # a URL followed by punctuation that is not its end
        "www." + "." * 2_000_000 + "a",
        "\n" * 2_000_000,  # line-anchored patterns (contact header, media website) tried at every blank line
        " \n" * 1_000_000,
    ],
    ids=["token", "dotted-token", "url-dots", "www-dots", "newlines", "blank-lines"],
)
def test_cleaning_a_huge_token_takes_linear_time(text):
    from prunetune.data import clean_content

    started = time.perf_counter()
    clean_content(text)
    assert time.perf_counter() - started < 3.0  # about 0.3 s each; the quadratic patterns took hours


def test_linear_patterns_remove_what_the_old_ones_did():
    from prunetune.data import clean_content

    text = (
        "Intro mail jane.doe+press@bmwgroup.com, see https://www.bmwgroup.com/en/a.html. Or www.bmw.de!\n\n"
        "  Media website: www.press.bmwgroup.com\nEnd."
    )
    cleaned, removed = clean_content(text)
    assert cleaned == "Intro mail, see. Or!\n\nEnd."  # what the quadratic patterns gave
    assert removed["emails"] == 1 and removed["urls"] == 2 and removed["boilerplate"] == 1


# ---------------------------------------------------------------- 2. smoke --workdir never deletes what it did not make


def test_smoke_refuses_a_workdir_it_did_not_create(tmp_path):
    workdir = tmp_path / "v"
    workdir.mkdir()
    (workdir / "precious.txt").write_text("x\n")
    result = cli("smoke", "--articles", "40", "--workdir", str(workdir))
    one_line_error(result, f"--workdir {workdir}", "did not create", "choose an empty or new folder")
    assert (workdir / "precious.txt").read_text() == "x\n"


def test_smoke_reuses_the_workdir_it_made(tmp_path):
    from prunetune.smoke import WORKDIR_SENTINEL, prepare_workdir

    workdir = tmp_path / "w"
    params = {"data": {"source": "data/sample/articles.jsonl"}}
    prepare_workdir(ROOT, workdir, params, articles=3, long_share=0.0)
    assert (workdir / WORKDIR_SENTINEL).is_file() and (workdir / "dvc.yaml").is_file()
    (workdir / "left-over.log").write_text("from the last smoke\n")
    prepare_workdir(ROOT, workdir, params, articles=3, long_share=0.0)  # its own folder: emptied and rebuilt
    assert not (workdir / "left-over.log").exists() and (workdir / WORKDIR_SENTINEL).is_file()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--articles", "0"], ["--articles must be at least 20, got 0"]),
        (["--config", "/tmp/nope-prunetune.yaml"], ["--config /tmp/nope-prunetune.yaml: no such file"]),
    ],
)
def test_smoke_refuses_bad_arguments_before_any_work(tmp_path, args, fragments):
    result = cli("smoke", "--workdir", str(tmp_path / "new"), *args)
    message = one_line_error(result, *fragments)
    assert "repository root" not in message and not (tmp_path / "new").exists()


# ---------------------------------------------------------------- 3. collect --out never modifies a file it refuses


NOTES = b"# My notes\n\nThese are not articles.\nKeep them safe!\nno newline"


@pytest.mark.parametrize(
    "content",
    [
        NOTES,  # not JSONL at all: the last line was cut as "torn", then the file refused
        json.dumps({"url": "https://x/a"}).encode() + b"\nnot json, and no newline",  # a text tail
        json.dumps({"url": "https://x/a"}).encode() + b'\n{"title": "no url"}',  # a whole JSON tail, no url
        b'{"title": "no url"}\n{"url": "https://x/b", "tit',  # a torn tail after a line that is not an article
    ],
    ids=["notes", "text-tail", "json-tail", "bad-line-then-torn"],
)
def test_collect_leaves_a_file_it_refuses_byte_identical(tmp_path, content):
    from prunetune.collect import collect_articles

    out = tmp_path / "notes.md"
    out.write_bytes(content)
    with pytest.raises(PrunetuneError, match=f"{out}:[12]: not an article line"):
        collect_articles(out, 5, "http://127.0.0.1:9")  # refused before any request
    assert out.read_bytes() == content


def test_collect_cli_refuses_notes_in_one_line(tmp_path):
    out = tmp_path / "notes.md"
    out.write_bytes(NOTES)
    result = cli("collect", "--limit", "3", "--out", str(out), "--base-url", "http://127.0.0.1:9")
    one_line_error(result, f"{out}:1: not an article line", "choose another --out")
    assert out.read_bytes() == NOTES


def test_collect_still_cuts_a_torn_article_line(tmp_path):
    from prunetune.collect import open_output

    whole = json.dumps({"url": "https://x/a", "title": "A"}).encode() + b"\n"
    out = tmp_path / "c.jsonl"
    out.write_bytes(whole + b'{"url": "https://x/b", "ti')
    assert open_output(out) == ({"https://x/a"}, 1, True)
    assert out.read_bytes() == whole


# ---------------------------------------------------------------- 4. a torn checkpoint falls back to the one before


def run_finetune(model_dir, run_dir, train=None, lora=None, examples=None):
    return finetune_into(model_dir, run_dir.parent, run_dir.name, lora=lora, train=train, examples=examples)


def killed_at(step, monkeypatch, run):
    """Run `run()` with the trainer killed (KeyboardInterrupt, as a kill leaves it) once global_step reaches step."""
    from prunetune.trainers import HealingTrainer

    original = HealingTrainer.training_step

    def killed(self, *args, **kwargs):
        if self.state.global_step == step:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HealingTrainer, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(HealingTrainer, "training_step", original)


@pytest.fixture(scope="module")
def killed_scratch(tiny_model_dir, tmp_path_factory):
    """The scratch dir of a run killed after step 4: checkpoint-2 and checkpoint-4 on disk."""
    run_dir = tmp_path_factory.mktemp("killed") / "run"
    with pytest.MonkeyPatch.context() as mp:
        killed_at(4, mp, lambda: run_finetune(tiny_model_dir, run_dir))
    assert sorted(p.name for p in (run_dir / "scratch").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    return run_dir / "scratch"


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    run_finetune(tiny_model_dir, run_dir)
    return run_dir


def assert_same_adapter(model_dir: Path, expected_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    got = load_file(model_dir / "adapter" / "adapter_model.safetensors")
    expected = load_file(expected_dir / "adapter" / "adapter_model.safetensors")
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def _cut_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty_dir(path: Path) -> None:
    shutil.rmtree(path)
    path.mkdir()


TORN = {
    "trainer_state_cut": ("checkpoint-4/trainer_state.json", _cut_half, "trainer_state.json unreadable"),
    "adapter_truncated": ("checkpoint-4/adapter_model.safetensors", _cut_half, "adapter_model.safetensors unread"),
    "optimizer_truncated": ("checkpoint-4/optimizer.pt", _cut_half, "optimizer.pt unreadable"),
    "empty_checkpoint": ("checkpoint-4", _empty_dir, "trainer_state.json, adapter_model.safetensors"),
}


@pytest.mark.parametrize("torn", sorted(TORN))
def test_a_torn_checkpoint_is_skipped_for_the_one_before(
    killed_scratch, uninterrupted, tiny_model_dir, tmp_path, capsys, torn
):
    run_dir = tmp_path / "run"
    shutil.copytree(killed_scratch, run_dir / "scratch")
    name, tear, problem = TORN[torn]
    tear(run_dir / "scratch" / name)
    summary = run_finetune(tiny_model_dir, run_dir)
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 6  # the run completes
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("finetune:")]
    assert len(said) == 1 and said[0].startswith(f"finetune: skipping {run_dir / 'scratch' / 'checkpoint-4'}, a torn")
    assert problem in said[0]
    # not asserted: an adapter equal to the uninterrupted run's. The resumed epoch's data order is drawn from torch's
    # global RNG before the checkpoint's RNG state is restored, so the resumed run sees other batches (issue #30).
    assert (run_dir / "model" / "adapter" / "adapter_model.safetensors").is_file() and uninterrupted.is_dir()


def test_a_truncated_run_stamp_starts_afresh(killed_scratch, tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(killed_scratch, run_dir / "scratch")
    _cut_half(run_dir / "scratch" / "run.json")
    summary = run_finetune(tiny_model_dir, run_dir)
    assert summary["resumed_from_step"] == 0 and summary["steps"] == 6
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("finetune:")]
    assert said == [f"finetune: {run_dir / 'scratch' / 'run.json'} is damaged; starting afresh"]


# ---------------------------------------------------------------- 5. JSON and JSONL outputs are written atomically


def test_a_failed_write_leaves_the_old_file_byte_identical(tmp_path, monkeypatch):
    import errno

    from prunetune import jsonio

    out = tmp_path / "train.jsonl"
    out.write_bytes(b'{"old": 1}\n')

    def disk_full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jsonio.os, "fsync", disk_full)
    with pytest.raises(PrunetuneError, match=rf"^{out}: writing it failed \(No space left on device\); nothing"):
        jsonio.write_jsonl(out, [{"new": i} for i in range(1000)])
    assert out.read_bytes() == b'{"old": 1}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]
    monkeypatch.undo()
    jsonio.write_json(tmp_path / "r.json", {"b": 1, "a": [1, 2]})  # the same bytes as before the change
    assert (tmp_path / "r.json").read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'


def _limit_file_size():
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_split_on_a_full_disk_says_so_in_one_line_and_tears_nothing(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data/sample").mkdir(parents=True)
    shutil.copy(ROOT / "data/sample/articles.jsonl", tmp_path / "data/sample/articles.jsonl")
    out = tmp_path / "data/processed"
    out.mkdir()
    (out / "train.jsonl").write_bytes(b'{"old": "train"}\n')
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/split.py"), "data/processed"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=300,
    )
    one_line_error(result, "data/processed/train.jsonl: writing it failed (File too large); nothing was changed")
    assert (out / "train.jsonl").read_bytes() == b'{"old": "train"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["train.jsonl"]  # no temporary file left


# ---------------------------------------------------------------- 6. a corpus too small to split


@pytest.mark.parametrize("n", [1, 3, 5])
def test_a_corpus_too_small_for_three_splits_is_refused_at_split(tmp_path, n):
    from prunetune.data import prepare_corpus

    source = write_corpus(tmp_path / "a.jsonl", [make_article(i) for i in range(n)])
    cfg = data_cfg(source, val_fraction=0.1, test_fraction=0.2)  # params.yaml's fractions
    counts = {1: "train 1, val 0, test 0", 3: "train 2, val 0, test 1", 5: "train 4, val 0, test 1"}[n]
    with pytest.raises(PrunetuneError) as err:
        prepare_corpus(cfg)
    assert str(err.value) == (
        f"{source}: {n} articles kept split into {counts}; every split needs at least one article: at "
        "data.val_fraction 0.1 and data.test_fraction 0.2 that takes at least 6 articles: add articles or raise the "
        "fractions"
    )
    six = write_corpus(tmp_path / "b.jsonl", [make_article(i) for i in range(6)])
    _, report = prepare_corpus(data_cfg(six, val_fraction=0.1, test_fraction=0.2))
    assert [report["articles_per_split"][s]["total"] for s in ("train", "val", "test")] == [4, 1, 1]


def test_min_articles_by_hand():
    from prunetune.data import min_articles

    # 0.1/0.2: n=5 rounds 0.5 to 0 val articles (banker's rounding), n=6 gives test 1, val 1, train 4
    assert min_articles(0.1, 0.2) == 6
    assert min_articles(0.15, 0.2) == 4  # test round(0.8)=1, val round(0.6)=1, train 2
    assert min_articles(0.0, 0.2) is None


# ---------------------------------------------------------------- 7. study --dry-run checks the whole config


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["lora"].update(r=0), "lora.r"),
        (
            lambda c: c.update(trian={"learning_rate": 0.1}),
            "section 'trian' is not a known section (did you mean train?)",
        ),
    ],
    ids=["lora-r-0", "trian-section"],
)
def test_study_dry_run_refuses_what_a_stage_would_refuse(tmp_path, edit, message):
    import yaml

    config = yaml.safe_load((ROOT / "configs/smoke-real-shapes.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    one_line_error(cli("study", str(path), "--dry-run"), str(path), message)


# ---------------------------------------------------------------- 8. the QA loader


def _qa_file(tmp_path, question):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps({"questions": [{"id": "q1", "question": "Which?", **question}]}))
    return path


def test_qa_empty_options_without_a_category_is_not_a_factual_question(tmp_path):
    from prunetune.qa import load_qa

    path = _qa_file(tmp_path, {"options": [], "answer": "A"})
    with pytest.raises(PrunetuneError, match="question 'q1': a multiple-choice question needs a list of at least two"):
        load_qa(path)
    assert load_qa(_qa_file(tmp_path, {"options": None, "answer": "Munich"}))[0]["category"] == "factual"


@pytest.mark.parametrize("options", [["Munich", "Berlin", "Munich"], ["Munich", "Berlin", " munich "]])
def test_qa_duplicate_options_are_refused(tmp_path, options):
    from prunetune.qa import load_qa

    path = _qa_file(tmp_path, {"options": options, "answer_index": 1})
    with pytest.raises(PrunetuneError, match=r"question 'q1': options A and C are the same"):
        load_qa(path)


def test_qa_unknown_article_ids_get_a_warning():
    from prunetune.qa import unknown_articles_note

    questions = [{"article_id": a} for a in ("abc", "abc", "def", None, "known")]
    note = unknown_articles_note(questions, {"known": "test"})
    assert note == (
        "warning: 3 question(s) name an article_id that no split holds ('abc', 'def'): counted under split "
        "'unknown'; check article_id in qa.path"
    )
    assert unknown_articles_note(questions[3:], {"known": "test"}) is None


# ---------------------------------------------------------------- 9. the speed stage's pair in the wrong order


def test_speed_stage_refuses_a_swapped_pair(tiny_model, tiny_model_dir, tmp_path):
    from conftest import TINY_TEST_CFG

    from prunetune.models import save_model
    from prunetune.tiny import build_model

    _, tokenizer = tiny_model
    pruned = tmp_path / "pruned"
    save_model(build_model(tokenizer, {**TINY_TEST_CFG, "layers": 3}), tokenizer, pruned, {"source": "test"})
    command = [
        sys.executable,
        str(ROOT / "stages/speed.py"),
        str(pruned),
        str(tiny_model_dir),
        str(tmp_path / "s.json"),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    one_line_error(
        result, f"{tiny_model_dir} has 4 layers, more than {pruned}'s 3: the arguments are FULL_MODEL_DIR PRUNED"
    )
    assert not (tmp_path / "s.json").exists()


# ---------------------------------------------------------------- 10. and 16. sweep-report and seed-report


def _saved(tmp_path, exp_show, name="exp.json"):
    path = tmp_path / name
    path.write_text(json.dumps(exp_show))
    return str(path)


def test_sweep_report_refuses_a_metric_that_is_not_a_number(tmp_path):
    from test_sweep import fake_exp_show

    saved = _saved(tmp_path, fake_exp_show())
    result = cli("sweep-report", "--from-json", saved, "--out", str(tmp_path / "r"), "--metric", "summarization")
    one_line_error(result, "--metric summarization is a dict", "summarization.rougeL")
    assert not (tmp_path / "r").exists()


def test_sweep_workspace_row_is_labelled_workspace():
    from test_sweep import fake_exp_show

    from prunetune.sweep import exp_states

    names = [name for name, _ in exp_states(fake_exp_show())]
    assert names[-1] == "workspace" and "workspa" not in names


def _sweep_with(edit):
    from test_sweep import fake_exp_show

    exp_show = fake_exp_show()
    edit(exp_show)
    return exp_show


def _seeds_with(edit):
    from test_seeds import fake_exp_show

    exp_show = fake_exp_show()
    edit(exp_show)
    return exp_show


def _comparison(exp_show):
    return exp_show[0]["experiments"][0]["revs"][0]["data"]["metrics"]["metrics/comparison.json"]["data"]


BAD_SHAPES = {
    "experiments-strings": ("sweep-report", lambda e: e[1].update(experiments=["a", "b"]), "[1].experiments[0] is not"),
    "experiments-dict": ("sweep-report", lambda e: e[1].update(experiments={"a": 1}), "[1].experiments is a dict"),
    "experiments-int": ("sweep-report", lambda e: e[1].update(experiments=3), "[1].experiments is a int, not a list"),
    "efficiency-list": (
        "sweep-report",
        lambda e: e[1]["data"]["metrics"]["metrics/eval/ft_pruned.json"]["data"].update(efficiency=[1]),
        "[1].data.metrics['metrics/eval/ft_pruned.json'].data.efficiency is a list, not an object",
    ),
    "differences-list": (
        "seed-report",
        lambda e: _comparison(e).update(differences=[1, 2]),
        "[0].experiments[0].revs[0].data.metrics['metrics/comparison.json'].data.differences is a list",
    ),
    "diff-big": (
        "seed-report",
        lambda e: _comparison(e)["differences"]["ft_full-base_full"]["tag_f1"].update(diff="big"),
        "differences['ft_full-base_full']['tag_f1'].diff is 'big', not a number",
    ),
    "ci-3": (
        "seed-report",
        lambda e: _comparison(e)["differences"]["ft_full-base_full"]["tag_f1"].update(ci=3),
        "differences['ft_full-base_full']['tag_f1'].ci is 3, not a [low, high] pair of numbers",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SHAPES))
def test_reports_name_the_first_bad_value_of_exp_show(tmp_path, case):
    from prunetune.sweep import read_exp_show_file

    command, edit, where = BAD_SHAPES[case]
    exp_show = (_sweep_with if command == "sweep-report" else _seeds_with)(edit)
    with pytest.raises(PrunetuneError) as err:
        read_exp_show_file(_saved(tmp_path, exp_show), command)
    assert str(err.value).startswith(f"{command}: {tmp_path / 'exp.json'}: not `dvc exp show --json` output (")
    assert where in str(err.value)


def test_reports_refuse_an_out_that_is_a_file(tmp_path):
    from test_seeds import fake_exp_show as seeds_exp_show
    from test_sweep import fake_exp_show

    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    for command, exp_show in (("sweep-report", fake_exp_show()), ("seed-report", seeds_exp_show())):
        result = cli(command, "--from-json", _saved(tmp_path, exp_show), "--out", str(taken))
        one_line_error(result, f"--out {taken}: is a file; give a folder")
    assert taken.read_text() == "mine\n"


# ---------------------------------------------------------------- 11., 18. and 19. command-line arguments and paths


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "2"], "--threshold is a Jaccard similarity in (0, 1], got 2.0"),
        (["--threshold", "0"], "--threshold is a Jaccard similarity in (0, 1], got 0.0"),
        (["--sizes", "0"], "--sizes must each be at least 10 articles, got [0]"),
        (["--sizes", "100", "-5"], "--sizes must each be at least 10 articles, got [100, -5]"),
        (["--json", "/proc/prunetune/x.json"], "--json /proc/prunetune/x.json: cannot be written there"),
    ],
)
def test_bench_split_refuses_bad_arguments_before_the_work(args, message):
    started = time.perf_counter()
    result = cli("bench-split", "--sizes", "2000", *args) if "--sizes" not in args else cli("bench-split", *args)
    assert "params.yaml" not in one_line_error(result, message)
    assert time.perf_counter() - started < 60  # refused first: 2000 articles would be split before the json write


def test_bench_refuses_an_unknown_device():
    one_line_error(cli("bench", "--device", "tpu7"), "bench --device tpu7: not a device; give cpu, cuda or cuda:N")


def test_plots_template_out_must_be_a_writable_file(tmp_path, monkeypatch):
    from prunetune import plotpage

    one_line_error(cli("plots-template", "--out", str(tmp_path)), f"--out {tmp_path}: is a directory")
    monkeypatch.setattr(plotpage, "offline_template", lambda: "<html></html>\n")
    out = tmp_path / "missing" / "parent" / "page.html"
    assert plotpage.write_template(out) == out and out.read_text() == "<html></html>\n"  # parents made


# ---------------------------------------------------------------- 12. params.yaml that YAML or UTF-8 rejects


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"data:\n  seed: \xff\n", "params.yaml: not valid UTF-8 (byte 14); save it as UTF-8"),
        (b"? [a, b]\n: 1\n", "params.yaml:1: a list as a key; keys are plain names"),
        (b"data:\n  ? {x: 1}\n  : 2\n", "params.yaml:2: a mapping as a key; keys are plain names"),
        (None, "params.yaml: is a directory, not a YAML file"),
    ],
    ids=["non-utf8", "list-key", "mapping-key", "directory"],
)
def test_a_broken_params_yaml_is_one_line_in_a_stage(tmp_path, content, message):
    if content is None:
        (tmp_path / "params.yaml").mkdir()
    else:
        (tmp_path / "params.yaml").write_bytes(content)
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/split.py"), "out"], cwd=tmp_path, capture_output=True, text=True
    )
    assert one_line_error(result) == f"error: {message}"


# ---------------------------------------------------------------- 13. a damaged prunetune.json


@pytest.mark.parametrize("content", ['{"source": "te', "[1, 2]", "\udcff"], ids=["cut", "list", "not-utf8"])
def test_a_damaged_model_meta_is_one_line(tmp_path, content):
    from prunetune.models import read_meta

    (tmp_path / "prunetune.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(
        PrunetuneError, match=rf"^{tmp_path / 'prunetune.json'}: .*rerun the stage that wrote {tmp_path}$"
    ):
        read_meta(tmp_path)


# ---------------------------------------------------------------- 14. Ctrl-C in a stage


def test_ctrl_c_in_a_stage_is_one_line_and_exit_130():
    code = "import os, signal\nfrom prunetune.config import run_stage\n"
    code += "run_stage(lambda: os.kill(os.getpid(), signal.SIGINT))"  # a real SIGINT, as Ctrl-C sends
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "interrupted (Ctrl-C); run it again to finish (dvc repro: a fine-tune resumes)"
    ]


# ---------------------------------------------------------------- 15. collect --timeout inf


@pytest.mark.parametrize("flag", ["--timeout", "--delay"])
def test_collect_refuses_an_infinite_time(tmp_path, flag):
    result = cli("collect", "--limit", "3", "--out", str(tmp_path / "c.jsonl"), flag, "inf")
    one_line_error(result, f"{flag} must be a finite number of seconds, got inf")


# ---------------------------------------------------------------- 17. study with a corpus outside the repository


def test_study_refuses_a_corpus_outside_the_repository(tmp_path):
    from prunetune.study import copy_paths

    corpus = tmp_path / "articles.jsonl"
    corpus.write_text("{}\n")
    with pytest.raises(PrunetuneError, match=rf"^data.source: {corpus} is outside the repository \({ROOT}\)"):
        copy_paths(corpus, ROOT)


# ---------------------------------------------------------------- 20. the plot stage's comparison.json


@pytest.mark.parametrize(
    ("comparison", "where"),
    [
        ({"differences": {}}, "no 'table'"),
        ({"table": {"base_full": {}}}, "no table row for base_pruned"),
        ([], "no 'table'"),
    ],
)
def test_plot_refuses_a_comparison_without_its_table(comparison, where):
    from prunetune.plots import check_comparison

    with pytest.raises(PrunetuneError) as err:
        check_comparison(comparison, "metrics/comparison.json")
    assert str(err.value).startswith(f"metrics/comparison.json: {where}")
    assert str(err.value).endswith("; rerun the compare stage (dvc repro compare)")
