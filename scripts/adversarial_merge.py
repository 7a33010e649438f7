"""Fold a rerun of some adversarial cases into an earlier full pass: every case's latest outcome, and the counts before and after.

    .venv/bin/python scripts/adversarial.py --out results/adversarial/rerun --rerun results/adversarial/first-pass/cases.csv --only signals
    .venv/bin/python scripts/adversarial_merge.py --before results/adversarial/first-pass --rerun results/adversarial/rerun \\
        --out results/adversarial

writes ``cases.csv`` (each case of the earlier pass, with the rerun's row where the case was rerun) and ``summary.md``
(outcome counts before and after, per class after, and every rerun case with its outcome before and after).
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

OUTCOMES = ("ok", "misleading message", "traceback", "data loss", "hang")


def read(folder: Path) -> list[dict[str, str]]:
    with open(folder / "cases.csv", newline="") as f:
        return list(csv.DictReader(f))


def first_line(folder: Path) -> str:
    """The sentence under the title of a pass's summary.md: how many cases, how long, when, with which command."""
    lines = (folder / "summary.md").read_text().splitlines()
    return next((line for line in lines[1:] if line.strip()), "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="folder of the earlier full pass (cases.csv, summary.md)")
    parser.add_argument("--rerun", required=True, help="folder of the rerun (cases.csv, summary.md)")
    parser.add_argument("--out", required=True, help="folder for the merged cases.csv and summary.md")
    args = parser.parse_args(argv)
    before, rerun = read(Path(args.before)), {r["case"]: r for r in read(Path(args.rerun))}
    merged = [rerun.get(r["case"], r) for r in before]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["case", "class", "outcome", "seconds", "message"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(merged)
    was, now = Counter(r["outcome"] for r in before), Counter(r["outcome"] for r in merged)
    by_class = Counter((r["class"], r["outcome"]) for r in merged)
    classes = list(dict.fromkeys(r["class"] for r in merged))
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")[:220]  # noqa: E731
    lines = ["# Adversarial pass", "",
             f"Before (the full pass, in `{args.before}`): {first_line(Path(args.before))}", "",
             f"After: {len(rerun)} cases rerun (every case not ok before, and the whole signals class). {first_line(Path(args.rerun))}", "",
             "| outcome | before | after |", "|---|---|---|", *(f"| {o} | {was[o]} | {now[o]} |" for o in OUTCOMES), "",
             "After, per class:", "", "| class | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 1) + "|",
             *(f"| {c} | " + " | ".join(str(by_class[c, o]) for o in OUTCOMES) + " |" for c in classes), "",
             "## The cases rerun", "", "| case | class | before | after | message after |", "|---|---|---|---|---|"]
    earlier = {r["case"]: r for r in before}
    for name, r in rerun.items():
        lines.append(f"| {name} | {r['class']} | {earlier.get(name, {}).get('outcome', '(new)')} | {r['outcome']} | {cell(r['message'])} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(", ".join(f"{now[o]} {o}" for o in OUTCOMES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
