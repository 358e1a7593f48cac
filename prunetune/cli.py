"""The `prunetune` command. Pipeline stages run through `dvc repro`; this holds the tools around it."""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import version
from pathlib import Path


def info(_: argparse.Namespace) -> None:
    """Print what the pipeline will run on: versions and the device chosen."""
    import torch

    from prunetune.models import pick_device, pick_dtype

    device = pick_device()
    print(f"prunetune {version('prunetune')} on Python {platform.python_version()}")
    for package in ("torch", "transformers", "peft", "trl", "dvc", "dvclive"):
        print(f"  {package:<13}{version(package)}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"  device       {device} ({name}), dtype {pick_dtype(device)}, {torch.get_num_threads()} threads")


def collect(args: argparse.Namespace) -> None:
    """Collect BMW PressClub articles into a JSONL corpus; a stop or Ctrl-C loses nothing, a rerun resumes."""
    import sys

    from prunetune.collect import collect_articles, unknown_types_note
    from prunetune.config import PrunetuneError
    from prunetune.pressclub import DEFAULT_BASE_URL

    try:
        report = collect_articles(
            args.out,
            args.limit,
            args.base_url or DEFAULT_BASE_URL,
            delay=args.delay,
            details=args.details,
            timeout=args.timeout,
            retries=args.retries,
            progress=None,
        )
    except PrunetuneError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(
            f"interrupted: every article written so far is in {args.out}; run the same command to resume",
            file=sys.stderr,
        )
        sys.exit(130)
    print(report.summary())
    for problem in report.invalid[:3]:
        print(f"  invalid: {problem['url']}: {problem['problem']}")
    if note := unknown_types_note(report):
        print(note)


def sweep_report(args: argparse.Namespace) -> None:
    """Quality against parameters and decode speed over the DVC experiments: a Pareto plot and its table."""
    from prunetune.config import run_stage
    from prunetune.sweep import read_exp_show_file, read_experiments
    from prunetune.sweep import sweep_report as write_report

    def report() -> None:
        if args.from_json:
            exp_show = read_exp_show_file(args.from_json)
        else:
            exp_show = read_experiments(all_commits=args.all_commits)
        for kind, path in write_report(exp_show, Path(args.out), args.variant, args.metric).items():
            print(f"{kind:<9}{path}")

    run_stage(report)


def seed_report(args: argparse.Namespace) -> None:
    """Several seeds' DVC experiments pooled: each paired difference with its between-seed spread."""
    from prunetune.config import run_stage
    from prunetune.seeds import read_comparisons
    from prunetune.seeds import seed_report as write_report
    from prunetune.sweep import read_exp_show_file, read_experiments

    def report() -> None:
        exp_show, runs = None, None
        if args.comparisons:
            runs = read_comparisons(Path(args.comparisons))
        elif args.from_json:
            exp_show = read_exp_show_file(args.from_json, "seed-report")
        else:
            exp_show = read_experiments(args.all_commits, "seed-report")
        for kind, path in write_report(exp_show, Path(args.out), args.experiments or None, runs).items():
            print(f"{kind:<9}{path}")

    run_stage(report)


def recompare(args: argparse.Namespace) -> None:
    """Recompute reports/comparison.md from the committed predictions and metrics; say whether it agrees."""
    import sys

    from prunetune.comparison import recompute, report_differences
    from prunetune.config import PrunetuneError, run_stage
    from prunetune.params import EvalParams, load_section

    def check() -> None:
        cfg = load_section(EvalParams, args.params)
        report = Path(args.report)
        if not report.is_file():
            raise PrunetuneError(f"{report}: not found; run `dvc repro compare` or give --report")
        _, markdown = recompute(
            Path(args.eval_dir), Path(args.qa_dir), Path(args.predictions), cfg.bootstrap_resamples, cfg.seed,
            cfg.ci_method,
        )  # fmt: skip
        differing = report_differences(report.read_text(encoding="utf-8"), markdown)
        if differing:
            print("\n".join(differing[:20]))
            print(f"recompare: {report} differs from its recomputation in {len(differing)} line(s)", file=sys.stderr)
            sys.exit(1)
        print(f"recompare: every figure of {report} recomputed from {args.predictions}/ agrees")

    run_stage(check)


def qa_build(args: argparse.Namespace) -> None:
    """Open-book multiple-choice questions from the held-out articles of params.yaml's split, into one QA file."""
    from prunetune.config import run_stage
    from prunetune.params import DataParams, load_section
    from prunetune.qabuild import build_qa_file

    def build() -> None:
        made = build_qa_file(load_section(DataParams, args.params), Path(args.out), args.seed)
        kinds = ", ".join(f"{kind} {n}" for kind, n in made["kinds"].items())
        print(f"{args.out}: {made['questions']} questions from {made['articles']} held-out articles ({kinds})")

    run_stage(build)


def bench(args: argparse.Namespace) -> None:
    """Batched vs one-at-a-time generation, full vs pruned speed, training batching: figures for BENCHMARKS.md."""
    from prunetune.bench import run_bench, summary_lines
    from prunetune.config import run_stage
    from prunetune.jsonio import check_writable, write_json

    def write(result: dict) -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            write_json(args.json, result)

    def measure() -> None:
        if args.json:
            check_writable(args.json, "--json")  # before the work, not after it
        result = run_bench(
            arch=args.arch,
            random_init=args.random_init,
            quick=args.quick,
            device_name=args.device,
            batch_size=args.batch_size,
            prompts_per_task=args.prompts_per_task,
            threads=args.threads,
            params_path=args.params,
            regimes=tuple(args.regime or ("eval", "fixed_length")),
            gen_repeats=args.gen_repeats,
            on_section=write,
            sections=tuple(args.section or ("generation", "pruning", "training")),
        )
        print("\n".join(summary_lines(result)))

    run_stage(measure)


MIN_BENCH_SPLIT_SIZE = 10  # fewer cannot hold the planted copies and three non-empty splits


def bench_split(args: argparse.Namespace) -> None:
    """The split stage's time and de-duplication's precision and recall on planted synthetic corpora."""
    from prunetune.config import PrunetuneError, run_stage
    from prunetune.jsonio import check_writable, write_json
    from prunetune.splitbench import bench_size, table

    def measure() -> None:
        if any(size < MIN_BENCH_SPLIT_SIZE for size in args.sizes):
            raise PrunetuneError(f"--sizes must each be at least {MIN_BENCH_SPLIT_SIZE} articles, got {args.sizes}")
        if not 0 < args.threshold <= 1:
            raise PrunetuneError(f"--threshold is a Jaccard similarity in (0, 1], got {args.threshold}")
        if args.json:
            check_writable(args.json, "--json")  # before the work, not after it
        results = []
        for size in args.sizes:
            results.append(bench_size(size, args.threshold, args.seed))
            print(f"bench-split: {size} articles: {results[-1]['split_s']:.1f} s", flush=True)
        if args.json:
            write_json(args.json, results)
        print(table(results))

    run_stage(measure)


def study(args: argparse.Namespace) -> None:
    """A config (configs/llama-3.2-1b.yaml) as a DVC experiment in a temporary copy: params.yaml stays untouched."""
    import shlex
    import subprocess
    import sys

    from prunetune.config import run_stage
    from prunetune.study import study_command

    def launch() -> None:
        command = study_command(args.config, args.name, Path("."), args.force, args.set or [])
        if args.dry_run:
            print(shlex.join(command))
            return
        sys.exit(subprocess.run(command).returncode)

    run_stage(launch)


def study_record(args: argparse.Namespace) -> None:
    """A finished study experiment's files copied into studies/<config>/<experiment>/ on main."""
    from prunetune.config import run_stage
    from prunetune.studyrecord import record

    def copy() -> None:
        for name in args.experiments:
            out_dir = Path(args.out) / name
            paths = record(name, out_dir)
            print(f"study-record: {name} -> {out_dir} ({len(paths)} files)")

    run_stage(copy)


def study_diff(args: argparse.Namespace) -> None:
    """A recorded study's metrics beside the workspace's (the default's), as `dvc metrics diff` prints them."""
    from prunetune.config import run_stage
    from prunetune.studyrecord import diff_rows, diff_table

    def show() -> None:
        study = Path(args.study)
        rows = diff_rows(Path("."), study, args.only)
        print(diff_table(rows, "default", study.name))

    run_stage(show)


def smoke(args: argparse.Namespace) -> None:
    """Every stage on the real study's shapes (configs/smoke-real-shapes.yaml), each timed and its peak RSS taken."""
    from prunetune.config import run_stage
    from prunetune.jsonio import check_writable, write_json
    from prunetune.smoke import run_smoke, table

    def measure() -> None:
        if args.json:
            check_writable(args.json, "--json")  # before the work, not after it
        root = Path(__file__).resolve().parents[1]
        results = run_smoke(
            root,
            args.workdir.resolve(),
            args.config,
            args.articles,
            direct=args.direct,
            vocab_guard=not args.no_vocab_guard,
        )
        if args.json:
            write_json(args.json, results)
        print(table(results))

    run_stage(measure)


def plots_template(args: argparse.Namespace) -> None:
    """Write the offline HTML template `dvc plots show` uses (.dvc/config plots.html_template)."""
    from prunetune.config import run_stage
    from prunetune.plotpage import write_template

    def write() -> None:
        path = write_template(Path(args.out))
        print(f"plots-template: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")

    run_stage(write)


def main(argv: list[str] | None = None) -> None:
    from prunetune.politehttp import DEFAULTS
    from prunetune.pressclub import DEFAULT_BASE_URL

    parser = argparse.ArgumentParser(prog="prunetune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions and the device the pipeline will use").set_defaults(run=info)
    gather = commands.add_parser("collect", help="collect BMW PressClub articles into a JSONL corpus (resumable)")
    gather.add_argument("--base-url", help=f"the PressClub site (default: {DEFAULT_BASE_URL})")
    gather.add_argument("--limit", type=int, required=True, help="stop once --out holds this many articles")
    gather.add_argument("--out", type=Path, required=True, help="JSONL file; articles already in it are skipped")
    gather.add_argument(
        "--delay", type=float, default=DEFAULTS.delay, help="seconds between requests (default: %(default)s)"
    )
    gather.add_argument(
        "--details",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fetch each article's page for its text (default); --no-details uses the listing summary as content, "
        "one request per listing page, which makes summarization trivial: for a quick look only",
    )
    gather.add_argument(
        "--timeout", type=float, default=DEFAULTS.timeout, help="seconds per request (default: %(default)s)"
    )
    gather.add_argument(
        "--retries", type=int, default=DEFAULTS.retries, help="retries per request, with backoff (default: %(default)s)"
    )
    gather.set_defaults(run=collect)
    sweep = commands.add_parser("sweep-report", help="Pareto plot and table of a pruning sweep's DVC experiments")
    sweep.add_argument("--out", default="reports/sweep", help="directory for sweep.png/.csv/.md (default: %(default)s)")
    sweep.add_argument("--variant", default="ft_pruned", help="the eval variant plotted (default: %(default)s)")
    sweep.add_argument(
        "--metric",
        default="summarization.rougeL",
        help="quality key in metrics/eval/VARIANT.json, e.g. title_generation.rougeL or perplexity "
        "(default: %(default)s)",
    )
    sweep.add_argument("--all-commits", action="store_true", help="experiments of every commit, not only HEAD's")
    sweep.add_argument("--from-json", help="read a saved `dvc exp show --json` output instead of running it")
    sweep.set_defaults(run=sweep_report)
    seeds = commands.add_parser("seed-report", help="pool DVC experiments run with different seeds into one table")
    seeds.add_argument("experiments", nargs="*", help="experiment names (default: every one with a comparison)")
    seeds.add_argument("--out", default="reports/seeds", help="directory for seeds.md/.json (default: %(default)s)")
    seeds.add_argument("--all-commits", action="store_true", help="experiments of every commit, not only HEAD's")
    seeds.add_argument("--from-json", help="read a saved `dvc exp show --json` output instead of running it")
    seeds.add_argument(
        "--comparisons", help="pool the committed NAME/comparison.json files of this folder instead (no dvc needed)"
    )
    seeds.set_defaults(run=seed_report)
    again = commands.add_parser("recompare", help="recompute reports/comparison.md from the committed predictions")
    again.add_argument("--report", default="reports/comparison.md", help="the committed report (default: %(default)s)")
    again.add_argument("--eval-dir", default="metrics/eval", help="default: %(default)s")
    again.add_argument("--qa-dir", default="metrics/qa", help="default: %(default)s")
    again.add_argument("--predictions", default="predictions", help="default: %(default)s")
    again.add_argument("--params", default="params.yaml", help="its eval section: resamples, seed (%(default)s)")
    again.set_defaults(run=recompare)
    building = commands.add_parser("qa-build", help="build open-book multiple-choice QA from val and test articles")
    building.add_argument("--out", default="data/sample/qa_heldout.json", help="QA file (default: %(default)s)")
    building.add_argument("--params", default="params.yaml", help="whose data section splits (default: %(default)s)")
    building.add_argument("--seed", type=int, default=0, help="draws the distractors (default: %(default)s)")
    building.set_defaults(run=qa_build)
    timing = commands.add_parser("bench", help="measure generation, pruning and training speed (BENCHMARKS.md)")
    timing.add_argument("--quick", action="store_true", help="fewer repeats: under 3 minutes on 2 CPU cores")
    timing.add_argument("--json", help="write every figure to this JSON file")
    timing.add_argument("--arch", default="tiny", choices=["tiny", "llama-3.2-1b"], help="model shape (default: tiny)")
    timing.add_argument(
        "--random-init", action="store_true", help="build the --arch model with random weights instead of models/"
    )
    timing.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    timing.add_argument("--batch-size", type=int, help="generation batch (default: params.yaml eval.batch_size)")
    timing.add_argument(
        "--prompts-per-task", type=int, help="generation prompts per task (default: all of the test split)"
    )
    timing.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice, one per core)")
    timing.add_argument(
        "--params", default="params.yaml", help="params file whose settings are benchmarked (default: %(default)s)"
    )
    timing.add_argument(
        "--regime",
        action="append",
        choices=["eval", "fixed_length"],
        help="generation regime to time, repeatable (default: both: as eval runs it, and every prompt at max length)",
    )
    timing.add_argument("--gen-repeats", type=int, help="generation passes of each kind (default: the mode's)")
    timing.add_argument(
        "--section",
        action="append",
        choices=["generation", "pruning", "training"],
        help="measure only this section, repeatable (default: all three)",
    )
    timing.set_defaults(run=bench)
    split = commands.add_parser("bench-split", help="split time and duplicates found on planted synthetic corpora")
    split.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 5000, 10000], help="distinct articles (default: %(default)s)"
    )
    split.add_argument("--threshold", type=float, default=0.8, help="near-duplicate Jaccard (default: %(default)s)")
    split.add_argument("--seed", type=int, default=0, help="corpus seed (default: %(default)s)")
    split.add_argument("--json", help="write the figures to this JSON file")
    split.set_defaults(run=bench_split)
    studying = commands.add_parser("study", help="run a config (e.g. the real study) as a DVC experiment")
    studying.add_argument("config", nargs="?", default="configs/llama-3.2-1b.yaml", help="default: %(default)s")
    studying.add_argument("-n", "--name", help="experiment name (default: the config's file name)")
    studying.add_argument("-f", "--force", action="store_true", help="replace an experiment of the same name")
    studying.add_argument("--dry-run", action="store_true", help="check, print the dvc command, run nothing")
    studying.add_argument(
        "-S", "--set", action="append", metavar="KEY=VALUE", help="override one value of the config (e.g. train.seed=1)"
    )
    studying.set_defaults(run=study)
    recording = commands.add_parser("study-record", help="copy finished study experiments into studies/ on main")
    recording.add_argument("experiments", nargs="+", help="experiment names (e.g. smollm2-135m smollm2-135m-s1)")
    recording.add_argument("--out", required=True, help="the study's folder, e.g. studies/smollm2-135m")
    recording.set_defaults(run=study_record)
    differ = commands.add_parser("study-diff", help="a recorded study's metrics beside the default's")
    differ.add_argument("study", help="a recorded experiment, e.g. studies/smollm2-135m/smollm2-135m")
    differ.add_argument("--only", help="only metrics files whose path contains this (e.g. comparison)")
    differ.set_defaults(run=study_diff)
    smoking = commands.add_parser("smoke", help="run every stage on the real study's shapes on this machine")
    smoking.add_argument("--config", type=Path, default=Path("configs/smoke-real-shapes.yaml"), help="%(default)s")
    smoking.add_argument(
        "--workdir", type=Path, default=Path("/tmp/prunetune-smoke"), help="throwaway repo copy (default: %(default)s)"
    )
    smoking.add_argument(
        "--articles",
        type=int,
        default=425,
        help="generated articles; about 400 remain after Fact & Figures are excluded (default: %(default)s)",
    )
    smoking.add_argument("--json", help="write every stage's figures to this JSON file")
    smoking.add_argument(
        "--direct", action="store_true", help="run dvc.lock's stage commands in a plain copy (no git, no dvc needed)"
    )
    smoking.add_argument(
        "--no-vocab-guard", action="store_true", help="no full-vocabulary tensor check (its hook slows GPU timings)"
    )
    smoking.set_defaults(run=smoke)
    page = commands.add_parser("plots-template", help="write the offline HTML template for `dvc plots show`")
    page.add_argument("--out", default=".dvc/plots/offline.html", help="where (default: %(default)s)")
    page.set_defaults(run=plots_template)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
