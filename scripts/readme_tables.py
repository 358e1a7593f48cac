"""Copy the committed run's tables into README.md, so the numbers under "Results of the default run" are the
reports' and nobody retypes them.

python scripts/readme_tables.py   (after `dvc repro` and `prunetune seed-report ... --out reports/seeds`)

Each README table is found by its header row and replaced whole by the report's table with the same header.
The sentences under the tables are written by hand from reports/seeds/seeds.md: re-read them after a new run.
"""

from pathlib import Path

import speed_figures  # every speed and time figure of README.md and BENCHMARKS.md, from the JSON reports

README = Path("README.md")
SOURCES = (Path("reports/comparison.md"), Path("reports/seeds/seeds.md"))


def tables(text: str) -> list[list[str]]:
    """Every Markdown table in text: its runs of lines that start with '|'."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def main() -> None:
    by_header = {table[0]: table for source in SOURCES for table in tables(source.read_text())}
    lines, out, replaced = README.read_text().splitlines(), [], 0
    index = 0
    while index < len(lines):
        table = by_header.get(lines[index])
        if table is None:
            out.append(lines[index])
            index += 1
            continue
        while index < len(lines) and lines[index].startswith("|"):
            index += 1
        out.extend(table)
        replaced += 1
    README.write_text("\n".join(out) + "\n")
    print(f"README.md: {replaced} tables replaced from {', '.join(map(str, SOURCES))}")
    speed_figures.write(Path("."))
    print("README.md, BENCHMARKS.md: speed and time figures written from reports/ (scripts/speed_figures.py)")


if __name__ == "__main__":
    main()
