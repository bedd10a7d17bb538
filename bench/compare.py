"""``python -m bench.compare BEFORE.json AFTER.json``: the before/after table of two ``make bench`` runs.

Reads two ``bench/results/report.json`` files and prints, in Markdown, the issue-15 ratios (stable keys of
``ratios``) and, for every workload measured in both runs, the server CPU per operation and the operations
per server CPU-second. Nothing is typed by hand: the report's before/after section is this output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _by_workload(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["name"], r["target"]): r for r in report["results"]}


def _cpu_ms(result: dict[str, Any]) -> float | None:
    done = result.get("completed") or 0
    cpu = result.get("server_cpu_s")
    return round(cpu * 1000 / done, 2) if done and cpu is not None else None


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _change(before: float | None, after: float | None, *, lower_is_better: bool) -> str:
    if not before or after is None:
        return "-"
    gain = before / after if lower_is_better else after / before
    return f"{gain:.2f} x"


def ratios_table(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The issue-15 ratios side by side, with whether each target is met after."""
    lines = ["| key | target | before | after | met after |", "| --- | --- | --- | --- | --- |"]
    for key, now in after["ratios"].items():
        then = before.get("ratios", {}).get(key, {})
        lines.append(f"| `{key}` | {now['comparison']} {now['target']} | {_cell(then.get('value'))} | "
                     f"{_cell(now.get('value'))} | {'yes' if now.get('met') else '**no**'} |")
    return lines


def workloads_table(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Server CPU per operation and operations per server CPU-second, before and after."""
    then, now = _by_workload(before), _by_workload(after)
    lines = ["| workload | server | CPU ms/op before | after | per CPU-s before | after | gain |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, result in now.items():
        if key not in then:
            continue
        old_ms, new_ms = _cpu_ms(then[key]), _cpu_ms(result)
        lines.append(f"| {key[0]} | {key[1]} | {_cell(old_ms)} | {_cell(new_ms)} | "
                     f"{_cell(then[key].get('per_server_cpu_s'))} | {_cell(result.get('per_server_cpu_s'))} | "
                     f"{_change(old_ms, new_ms, lower_is_better=True)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = _load(args.before), _load(args.after)
    print("\n".join(["### Ratios", "", *ratios_table(before, after), "", "### Per operation", "",
                     *workloads_table(before, after)]))


if __name__ == "__main__":
    main()
