"""Copy the published tables into docs/benchmarks.md between their markers (run after compare.py --publish).

benchmarks/results/suite.md -> between <!-- suite:start --> and <!-- suite:end -->;
benchmarks/results/compare.md -> between <!-- compare:start --> and <!-- compare:end -->;
benchmarks/results/seeds.md -> between <!-- seeds:start --> and <!-- seeds:end --> (benchmarks/seeds.py --publish);
benchmarks/results/ceiling.md -> between <!-- ceiling:start --> and <!-- ceiling:end --> (benchmarks/ceiling.py).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "benchmarks.md"  # the README links there; the tables moved with the notebook
readme = TARGET.read_text()
for name in ("suite", "compare", "seeds", "ceiling"):
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    table = (ROOT / "benchmarks" / "results" / f"{name}.md").read_text().strip()
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    readme = f"{head}{start}\n{table}\n{end}{tail}"
    print(f"{TARGET.relative_to(ROOT)} updated from benchmarks/results/{name}.md")
TARGET.write_text(readme)
