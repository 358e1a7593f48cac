"""README.md's and BENCHMARKS.md's speed and time figures are what the committed reports give
(scripts/readme_tables.py): regenerated here, any difference fails, and a figure planted by hand is caught."""

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_tables)


def test_committed_docs_are_what_the_reports_give():
    diff = readme_tables.check(ROOT)
    assert not diff, "\n".join(diff[:40]) + "\n(run python scripts/readme_tables.py)"


def _copy(tmp_path: Path) -> Path:
    for name in ("README.md", "BENCHMARKS.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "reports", tmp_path / "reports")
    return tmp_path


def test_a_figure_planted_in_a_generated_block_fails_the_check(tmp_path):
    root = _copy(tmp_path)
    text = (root / "BENCHMARKS.md").read_text()
    start = text.index("<!-- generated: bench-cpu -->")
    end = text.index("<!-- /generated -->", start)
    block = text[start:end]
    planted = block.replace("×", "× (planted)", 1)
    assert planted != block
    (root / "BENCHMARKS.md").write_text(text[:start] + planted + text[end:])
    diff = readme_tables.check(root)
    assert any(line.startswith("-") and "(planted)" in line for line in diff)
    # regenerating restores the report's figure and the check passes again
    (root / "BENCHMARKS.md").write_text(readme_tables.expected(root)["BENCHMARKS.md"])
    assert readme_tables.check(root) == []


def test_a_changed_report_changes_the_docs_and_text_outside_blocks_is_kept(tmp_path):
    root = _copy(tmp_path)
    report = next((root / "reports" / "bench").glob("*.json"))
    data = readme_tables.json.loads(report.read_text())
    data["pruning"]["decode_vs_ideal_b1"] = 0.5
    report.write_text(readme_tables.json.dumps(data))
    (root / "README.md").write_text((root / "README.md").read_text() + "\nA hand-written line.\n")
    docs = readme_tables.expected(root)
    assert "0.500" in docs["BENCHMARKS.md"] and docs["README.md"].endswith("\nA hand-written line.\n")
    assert readme_tables.check(root) != []


def test_an_unknown_block_is_one_clear_line(tmp_path):
    root = _copy(tmp_path)
    (root / "README.md").write_text("<!-- generated: nonsense -->\nx\n<!-- /generated -->\n")
    with pytest.raises(SystemExit, match="README.md: unknown generated block 'nonsense'"):
        readme_tables.expected(root)
