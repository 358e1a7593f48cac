"""The real study's shapes on a CPU (configs/smoke-real-shapes.yaml): a generated corpus, and every stage of the
pipeline run through `dvc repro`, one at a time, with its wall time, its peak RSS and the largest full-vocabulary
tensor it built (prunetune.memguard) measured.

No hub weights can be had offline, so the smoke's model is the embedded `tiny` one at Llama 3.2's vocabulary
(128,256), RoPE, tied embeddings and dated chat template, narrow and with random weights; its corpus is generated
text in the data contract's shape (press-release-like sentences from word lists, seeded), not BMW's. What it
proves is that the real configuration's shapes run end to end within a memory budget, not anything about quality.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from prunetune.config import PrunetuneError
from prunetune.params import load_all

SMOKE_CONFIG = Path("configs/smoke-real-shapes.yaml")
WORKDIR_SENTINEL = ".prunetune-smoke"  # marks a workdir this tool made: only such a folder is ever deleted
MIN_ARTICLES = 20  # fewer leave the split's val or test split empty at the smoke config's fractions
# dvc.yaml's stages in an order that respects their dependencies
STAGES = (
    "split",
    "base",
    "prune",
    "finetune_full",
    "finetune_pruned",
    *(f"eval@{v}" for v in ("base_full", "base_pruned", "ft_full", "ft_pruned")),
    *(f"qa@{v}" for v in ("base_full", "base_pruned", "ft_full", "ft_pruned")),
    "speed@base",
    "speed@ft",
    "compare",
    "plot",
)

# ---------------------------------------------------------------- the generated corpus

PLACES = (
    "Munich Leipzig Dingolfing Regensburg Spartanburg Oxford Goodwood Debrecen Shenyang Steyr Landshut Berlin".split()
)
MODELS = [
    "BMW iX3", "BMW i5 Touring", "BMW X5", "MINI Cooper SE", "BMW M3 Touring", "Rolls-Royce Spectre", "BMW i7",
    "BMW R 1300 GS", "MINI Countryman", "BMW 5 Series", "BMW CE 04", "BMW iX1", "BMW M5", "BMW XM",
]  # fmt: skip
TOPICS = {
    "Electromobility": "battery cells charging range drive train high-voltage storage recycling kilowatt-hours",
    "Production": "plant assembly line body shop paint shop logistics robots suppliers shift workforce",
    "Motorsport": "race circuit qualifying driver team championship podium lap endurance season",
    "Culture": "artist exhibition gallery orchestra festival sculpture audience collection museum",
    "Finance": "revenue earnings margin quarter deliveries outlook investors dividend cash flow",
    "Design": "interior materials lighting silhouette proportions studio prototype colour surfaces",
    "Sustainability": "emissions carbon renewable energy water circular materials supply chain targets",
    "Digitalisation": "software update operating system cloud data assistant connectivity navigation app",
}
TYPES = (("Press Release", 0.7), ("Press Kit", 0.15), ("Speech", 0.1), ("Fact & Figures", 0.05))
VERBS = "presents announces expands opens starts completes doubles reduces introduces confirms launches".split()
ADJECTIVES = "new electric efficient digital sustainable modular flexible connected powerful quiet".split()
PEOPLE = ["the Chairman of the Board", "the head of production", "the plant director", "the design chief",
          "the CFO", "the team principal", "the head of development", "the works council"]  # fmt: skip
TEMPLATES = (
    "{place}. The BMW Group {verb} {adj} {noun} for the {model}.",
    "With {n} {noun2} in {year}, the {model} sets a {adj} benchmark in {noun}.",
    '"{quote_adj} {noun} is what our customers expect," says {person}.',
    "The {adj} {noun} will be produced at the {place} plant from {month} {year}.",
    "Around {n} employees work on {noun} and {noun2} at the site.",
    "In the {ordinal} quarter, {n} units of the {model} were delivered to customers in {place}.",
    "The investment of {n} million euros covers {adj} {noun} and {noun2}.",
    "{person_cap} emphasised the role of {noun} for the company's {adj} strategy.",
    "The {model} combines {adj} {noun} with {adj2} {noun2}.",
    "Further details on {noun} and {noun2} will follow in {month}.",
    "Since {year}, the team in {place} has reduced the use of {noun2} by {pct} percent.",
    "Visitors can experience the {model} and its {adj} {noun} at the {place} event on {day} {month}.",
)
MONTHS = "January February March April May June July August September October November December".split()


def _sentence(rng: random.Random, topic: str) -> str:
    words = TOPICS[topic].split()
    person = rng.choice(PEOPLE)
    return rng.choice(TEMPLATES).format(
        place=rng.choice(PLACES),
        verb=rng.choice(VERBS),
        adj=rng.choice(ADJECTIVES),
        adj2=rng.choice(ADJECTIVES),
        quote_adj=rng.choice(ADJECTIVES).capitalize(),
        noun=rng.choice(words),
        noun2=rng.choice(words),
        model=rng.choice(MODELS),
        n=rng.randint(2, 990),
        pct=rng.randint(5, 60),
        year=rng.randint(2015, 2030),
        month=rng.choice(MONTHS),
        day=rng.randint(1, 28),
        ordinal=rng.choice(["first", "second", "third", "fourth"]),
        person=person,
        person_cap=person[0].upper() + person[1:],
    )


def generate_articles(
    n: int, seed: int = 0, words: tuple[int, int] = (150, 900), long_share: float = 0.1, long_words: int = 3400
) -> list[dict[str, Any]]:
    """n articles in the data contract's shape from seeded word lists: most between words[0] and words[1] words
    long, a long_share of them up to long_words (whole articles of that length pass 4,096 tokens)."""
    rng = random.Random(seed)
    types, weights = zip(*TYPES, strict=True)
    articles = []
    for index in range(n):
        topic = rng.choice(sorted(TOPICS))
        target = rng.randint(words[1], long_words) if rng.random() < long_share else rng.randint(*words)
        paragraphs, count = [], 0
        while count < target:
            paragraph = " ".join(_sentence(rng, topic) for _ in range(rng.randint(3, 6)))
            paragraphs.append(paragraph)
            count += len(paragraph.split())
        content = "\n\n".join(paragraphs)
        model = rng.choice(MODELS)
        tags = rng.sample(sorted(TOPICS), rng.randint(1, 3))
        articles.append(
            {
                "title": f"The {model}: {rng.choice(ADJECTIVES)} {rng.choice(TOPICS[topic].split())} ({index})",
                "date": f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2019, 2025)}",
                "type": rng.choices(types, weights)[0],
                "summary": " ".join(_sentence(rng, topic) for _ in range(2)),
                "tags": sorted({topic, *tags}),
                "url": f"https://smoke.invalid/article/S{index:06d}",
                "content": content,
            }
        )
    return articles


def write_corpus(path: str | Path, articles: list[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles), encoding="utf-8")
    return path


# ---------------------------------------------------------------- running every stage


# what a copy without git needs (direct runs): the code, the pipeline's definition and its tracked inputs
DIRECT_COPY = ("prunetune", "stages", "dvc.yaml", "dvc.lock", "configs", "data/sample")


def prepare_workdir(
    root: Path, workdir: Path, params: dict[str, Any], articles: int, use_git: bool = True, **corpus: Any
) -> Path:
    """A fresh git repository at workdir holding root's tracked files (without use_git: a plain copy of DIRECT_COPY),
    params.yaml replaced by `params` and the generated corpus (generate_articles(articles, **corpus)) where params'
    data.source names it (a throwaway copy: nothing in root is written)."""
    if workdir.exists():
        if workdir.is_file() or (any(workdir.iterdir()) and not (workdir / WORKDIR_SENTINEL).is_file()):
            raise PrunetuneError(
                f"--workdir {workdir}: holds files this tool did not create (no {WORKDIR_SENTINEL}); "
                "it would be deleted: choose an empty or new folder"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / WORKDIR_SENTINEL).write_text("a throwaway copy made by prunetune smoke; it may be deleted\n")
    if not use_git:
        for name in DIRECT_COPY:
            copy = shutil.copytree if (root / name).is_dir() else shutil.copy2
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            copy(root / name, workdir / name)
    else:
        tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
        for name in tracked.split():
            if (root / name).is_file():
                (workdir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, workdir / name)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    write_corpus(workdir / params["data"]["source"], generate_articles(articles, **corpus))
    if not use_git:
        return workdir
    env = {**os.environ, "GIT_AUTHOR_NAME": "smoke", "GIT_AUTHOR_EMAIL": "smoke@invalid"}
    env.update(GIT_COMMITTER_NAME="smoke", GIT_COMMITTER_EMAIL="smoke@invalid")
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "smoke"]):
        subprocess.run(command, cwd=workdir, env=env, check=True, capture_output=True)
    return workdir


def run_measured(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, float, float]:
    """Exit status, wall seconds and peak RSS (MB: the largest process of the command's tree, from wait4)."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024  # Linux: KB


def stage_commands(workdir: Path) -> dict[str, str]:
    """Each stage's command as dvc.lock records it (foreach stages resolved): what a direct run executes."""
    lock = yaml.safe_load((workdir / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    missing = [stage for stage in STAGES if stage not in lock]
    if missing:
        raise PrunetuneError(f"smoke --direct: dvc.lock has no stage {', '.join(missing)}; run `dvc repro` once")
    return {stage: lock[stage]["cmd"] for stage in STAGES}


def peak_gpu_mb(log: Path, seen: int) -> float | None:
    """The largest peak GPU memory the stage's processes logged (config.run_stage, PRUNETUNE_PEAK_LOG), if any."""
    if not log.exists():
        return None
    peaks = [json.loads(line)["peak_gpu_mb"] for line in log.read_text().splitlines()[seen:]]
    peaks = [peak for peak in peaks if peak is not None]
    return round(max(peaks)) if peaks else None


def run_smoke(
    root: Path,
    workdir: Path,
    config: Path = SMOKE_CONFIG,
    articles: int = 425,
    max_rows: int = 256,
    direct: bool = False,
    vocab_guard: bool = True,
) -> list[dict[str, Any]]:
    """Every stage of dvc.yaml under `dvc repro --single-item`, in order, each measured; stops at a failure. With
    direct, each stage's dvc.lock command runs as it is, in a plain copy (a machine without git or dvc).

    Each stage runs under the full-vocabulary tensor guard (vocabulary from the config, at most max_rows rows) unless
    vocab_guard is off (its per-operator hook would slow a GPU's many small kernels: timings without it)."""

    if not (root / config).is_file():
        raise PrunetuneError(f"--config {config}: no such file (a path relative to {root}, or absolute)")
    if articles < MIN_ARTICLES:
        raise PrunetuneError(f"--articles must be at least {MIN_ARTICLES}, got {articles}")
    load_all(root / config)  # every section typed and ranged, as params.yaml is, before anything runs
    params = yaml.safe_load((root / config).read_text(encoding="utf-8"))
    vocab = params["model"]["tiny"]["vocab_size"]
    prepare_workdir(root, workdir, params, articles, use_git=not direct)
    commands = stage_commands(workdir) if direct else {}
    guard_log, peak_log = workdir / "vocab_guard.jsonl", workdir / "peak_memory.jsonl"
    env = {
        **os.environ,
        # the copy's prunetune first, whatever the venv has installed (then the caller's paths, e.g. carried wheels)
        "PYTHONPATH": os.pathsep.join(filter(None, [str(workdir), os.environ.get("PYTHONPATH")])),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(workdir / ".dvc-site-cache"),
        "TQDM_DISABLE": "1",
        "PRUNETUNE_PEAK_LOG": str(peak_log),
    }
    if vocab_guard:
        env |= {"PRUNETUNE_VOCAB_GUARD": f"{vocab}:{max_rows}", "PRUNETUNE_VOCAB_GUARD_LOG": str(guard_log)}
    results = []
    for stage in STAGES:
        seen = len(guard_log.read_text().splitlines()) if guard_log.exists() else 0
        peaks_seen = len(peak_log.read_text().splitlines()) if peak_log.exists() else 0
        log = workdir / f"smoke_{stage.replace('@', '_')}.log"
        command = ["sh", "-c", commands[stage]] if direct else ["dvc", "repro", "--single-item", stage]
        status, wall_s, rss_mb = run_measured(command, workdir, env, log)
        guarded = [json.loads(line) for line in guard_log.read_text().splitlines()[seen:]] if guard_log.exists() else []
        results.append(
            {
                "stage": stage,
                "status": status,
                "wall_s": round(wall_s, 1),
                "peak_rss_mb": round(rss_mb),
                "peak_gpu_mb": peak_gpu_mb(peak_log, peaks_seen),
                "largest_vocab_rows": max((g["largest_rows"] for g in guarded), default=None),
                "largest_vocab_shape": max(guarded, key=lambda g: g["largest_rows"])["shape"] if guarded else None,
            }
        )
        print(json.dumps(results[-1]), flush=True)
        if status != 0:
            tail = log.read_text().strip().splitlines()[-3:]
            raise PrunetuneError(f"smoke: stage {stage} failed (exit {status}); {log}: {' | '.join(tail)}")
    return results


def table(results: list[dict[str, Any]]) -> str:
    """The BENCHMARKS.md table: one row per stage, and the total (with a peak GPU memory column when one was used)."""
    gpu = any(r.get("peak_gpu_mb") is not None for r in results)
    extra = (" peak GPU memory |", "---|") if gpu else ("", "")
    rows = [
        f"| stage | wall time | peak RSS |{extra[0]} largest full-vocabulary tensor |",
        f"|---|---|---|{extra[1]}---|",
    ]
    for r in results:
        shape = " × ".join(map(str, r["largest_vocab_shape"])) if r["largest_vocab_shape"] else "none"
        memory = f" {r['peak_gpu_mb'] / 1024:.2f} GB |" if r.get("peak_gpu_mb") is not None else " – |"
        rss = f"{r['peak_rss_mb'] / 1024:.2f} GB"
        rows.append(f"| {r['stage']} | {r['wall_s']:.0f} s | {rss} |{memory if gpu else ''} {shape} |")
    total = sum(r["wall_s"] for r in results)
    peak = max(r["peak_rss_mb"] for r in results) / 1024
    peak_gpu = max((r["peak_gpu_mb"] for r in results if r.get("peak_gpu_mb") is not None), default=0) / 1024
    gpu_total = f" **max {peak_gpu:.2f} GB** |" if gpu else ""
    rows.append(f"| **all {len(results)} stages** | **{total / 60:.0f} min** | **max {peak:.2f} GB** |{gpu_total} |")
    return "\n".join(rows)
