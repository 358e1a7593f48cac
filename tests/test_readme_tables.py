"""README.md's and BENCHMARKS.md's speed and time figures are what the committed reports give
(scripts/speed_figures.py, called by scripts/readme_tables.py): regenerated here, any difference fails, and a figure
planted by hand is caught."""

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("speed_figures", ROOT / "scripts" / "speed_figures.py")
speed_figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(speed_figures)


def test_committed_docs_are_what_the_reports_give():
    diff = speed_figures.check(ROOT)
    assert not diff, "\n".join(diff[:40]) + "\n(run python scripts/readme_tables.py)"


def _copy(tmp_path: Path) -> Path:
    for name in ("README.md", "BENCHMARKS.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "reports", tmp_path / "reports")
    return tmp_path


def _block(text: str, name: str) -> tuple[int, int]:
    start = text.index(f"<!-- {name}: scripts/readme_tables.py -->")
    return start, text.index(f"<!-- /{name} -->", start)


def test_a_figure_planted_in_a_generated_block_fails_the_check(tmp_path):
    root = _copy(tmp_path)
    text = (root / "BENCHMARKS.md").read_text()
    start, end = _block(text, "smoke-cpu")
    planted = text[start:end].replace("| split | 4 s |", "| split | 3 s |")
    assert planted != text[start:end]
    (root / "BENCHMARKS.md").write_text(text[:start] + planted + text[end:])
    diff = speed_figures.check(root)
    assert "-| split | 3 s | 0.33 GB | none |" in diff and "+| split | 4 s | 0.33 GB | none |" in diff
    speed_figures.write(root)  # regenerating restores the report's figure
    assert speed_figures.check(root) == [] and (root / "BENCHMARKS.md").read_text() == text


def test_a_changed_report_changes_the_docs_and_text_outside_blocks_is_kept(tmp_path):
    root = _copy(tmp_path)
    report = root / "reports" / "smoke" / "real-shapes.json"
    stages = json.loads(report.read_text())
    stages[0]["wall_s"] = 61.0
    report.write_text(json.dumps(stages))
    (root / "README.md").write_text((root / "README.md").read_text() + "\nA hand-written line.\n")
    docs = speed_figures.expected(root)
    assert "| split | 61 s |" in docs["BENCHMARKS.md"] and docs["README.md"].endswith("\nA hand-written line.\n")
    assert speed_figures.check(root) != []


def test_bench_reports_are_the_bench_commands_own(tmp_path):
    """reports/bench also holds other scripts' reports (readme_tables.py's): only `prunetune bench --json` output,
    with its machine record, feeds the speed blocks; without any, a block says so instead of showing a figure."""
    root = tmp_path
    (root / "reports" / "bench").mkdir(parents=True)
    (root / "reports" / "bench" / "other.json").write_text(json.dumps({"runs": []}))
    assert speed_figures.bench_reports(root) == {}
    assert speed_figures.block_bench_cpu(root).startswith("Not measured yet")
    assert speed_figures.block_gpu_summary(root).startswith("On a GPU: not measured yet")
