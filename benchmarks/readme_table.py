"""Copy benchmarks/results/compare.md into the README between its compare markers (run after compare.py --publish)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- compare:start -->", "<!-- compare:end -->"

readme = (ROOT / "README.md").read_text()
table = (ROOT / "benchmarks" / "results" / "compare.md").read_text().strip()
head, rest = readme.split(START, 1)
_, tail = rest.split(END, 1)
(ROOT / "README.md").write_text(f"{head}{START}\n{table}\n{END}{tail}")
print("README updated from benchmarks/results/compare.md")
