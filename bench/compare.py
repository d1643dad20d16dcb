#!/usr/bin/env python3
"""Quiver / pgvector ratios from harness result JSONs (shared/bench/harness.py).

    python3 compare.py [--baseline pgvector] [--candidate quiver] [--machine FILE] RESULT.json...

Each JSON's "system" (harness --label) says which side it belongs to. Ingest
(COPY rows/s) and index build time come from the JSON that loaded the table;
search runs from every JSON. For each search setting of the baseline, the
candidate's setting compared with it is the fastest one whose recall@10 is at
least the baseline's (matched recall); when none reaches it, the candidate's
highest-recall setting, marked "recall below". Prints markdown on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(paths: list[Path]) -> dict[str, dict]:
    """system -> {"files", "load", "index", "runs", "server", "machine", "dataset", "k"}"""
    systems: dict[str, dict] = {}
    for p in paths:
        d = json.loads(p.read_text())
        s = systems.setdefault(d.get("system") or "?", {"files": [], "load": None, "index": None, "runs": [],
                                                       "server": {}, "machine": d.get("machine", {}),
                                                       "dataset": d.get("dataset", {}), "k": d.get("k", 10),
                                                       "param_mode": d.get("param_mode")})
        s["files"].append(str(p))
        if d.get("load"):
            s["load"] = d["load"]
        if d.get("index") and not d["index"].get("skipped"):
            s["index"] = d["index"]
        s["server"].update({k: v for k, v in (d.get("server") or {}).items() if v})
        k = d.get("k", 10)
        for r in d.get("runs", []):
            s["runs"].append({"file": str(p), "filter": r.get("filter") or "none", "setting": r.get("setting"),
                              "recall": r.get(f"recall_at_{k}"), "qps": r.get("qps"),
                              "p50": (r.get("latency_ms") or {}).get("p50"),
                              "p99": (r.get("latency_ms") or {}).get("p99"),
                              "short": r.get("queries_short_of_k"), "errors": r.get("errors"),
                              "error": r.get("error")})
    return systems


def num(x, nd=0, sep=True) -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, float)):
        return f"{x:,.{nd}f}" if sep else f"{x:.{nd}f}"
    return str(x)


def ratio(a, b) -> str:
    """a / b as 'N.NN×'."""
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return "-"
    return f"{a / b:.2f}×"


def ok(r: dict) -> bool:
    return not r.get("error") and r.get("qps") is not None and r.get("recall") is not None


def match(base_run: dict, cand_runs: list[dict]) -> tuple[dict | None, bool]:
    """Fastest candidate run with recall >= the baseline's; else the highest-recall one (flag False)."""
    good = [r for r in cand_runs if ok(r)]
    if not good:
        return None, False
    reach = [r for r in good if r["recall"] >= base_run["recall"]]
    if reach:
        return max(reach, key=lambda r: r["qps"]), True
    return max(good, key=lambda r: (r["recall"], r["qps"])), False


def label(name: str, s: dict | None) -> str:
    if not s:
        return name
    v = s["server"]
    ext = v.get("extension_version")
    sv = v.get("server_version")
    return f"{name} {ext}" + (f" (server {sv})" if sv else "") if ext else (f"{name} (server {sv})" if sv else name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="pgvector")
    ap.add_argument("--candidate", default="quiver")
    ap.add_argument("--machine", type=Path, help="a text file of machine facts to print (run.sh writes one)")
    ap.add_argument("results", nargs="+", type=Path)
    a = ap.parse_args()

    systems = load(a.results)
    B, C = systems.get(a.baseline), systems.get(a.candidate)
    if B is None and C is None:
        sys.exit(f"no results for {a.baseline!r} or {a.candidate!r} (have {sorted(systems)})")
    ref = B or C
    ds = ref["dataset"]
    print(f"## {a.candidate} / {a.baseline}: {ds.get('name')} ({ds.get('metric')}, {ds.get('rows_loaded')} rows, "
          f"{ds.get('queries')} queries, k={ref['k']})\n")
    bl, cl = label(a.baseline, B), label(a.candidate, C)
    print(f"| measure | {bl} | {cl} | {a.candidate}/{a.baseline} |")
    print("|---|---|---|---|")

    def idx_cell(s):
        if not s or not s["index"]:
            return "-"
        return f"{num(s['index'].get('seconds'), 1)} ({s['index'].get('name')})"

    bload, cload = (B or {}).get("load") or {}, (C or {}).get("load") or {}
    print(f"| ingest: COPY rows/s (into the unindexed table) | {num(bload.get('rows_per_s'))} | "
          f"{num(cload.get('rows_per_s'))} | {ratio(cload.get('rows_per_s'), bload.get('rows_per_s'))} |")
    bi, ci = ((B or {}).get("index") or {}).get("seconds"), ((C or {}).get("index") or {}).get("seconds")
    print(f"| index build s (lower is better) | {idx_cell(B)} | {idx_cell(C)} | {ratio(ci, bi)} |")

    filters = []
    for s in (B, C):
        for r in (s or {}).get("runs", []):
            if r["filter"] not in filters:
                filters.append(r["filter"])
    filters.sort(key=lambda f: f != "none")   # unfiltered first, then in run order
    for f in filters:
        bruns = [r for r in (B or {}).get("runs", []) if r["filter"] == f]
        cruns = [r for r in (C or {}).get("runs", []) if r["filter"] == f]
        what = "unfiltered" if f == "none" else f"filter {f}"
        if not bruns:   # candidate only: list its runs
            for r in cruns:
                print(f"| {what}, {r['setting']}: QPS / recall@10 | - | {num(r['qps'])} / {num(r['recall'], 3)} | - |")
            continue
        for br in bruns:
            if not ok(br):
                why = (f"ERROR: {br['error'][:80]}" if br.get("error") else
                       "no recall (the filter matches no loaded row)")
                print(f"| {what}, {a.baseline} {br['setting']} | {why} | - | - |")
                continue
            cr, reached = match(br, cruns)
            if cr is None:
                cq = cre = "-"
                note = "no result" if not cruns else "ERROR"
            else:
                cq, cre = num(cr["qps"]), num(cr["recall"], 3)
                note = cr["setting"] + ("" if reached else ", recall below")
            print(f"| {what}: QPS at matched recall | {num(br['qps'])} ({br['setting']}) | {cq} ({note}) | "
                  f"{ratio(cr and cr['qps'], br['qps'])} |")
            print(f"| {what}: recall@10 | {num(br['recall'], 3)} ({br['setting']}) | {cre} | "
                  f"{ratio(cr and cr['recall'], br['recall'])} |")

    print("\n### every setting, single client\n")
    print("| system | filter | setting | recall@10 | QPS | p50 ms | p99 ms | queries short of k | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in ((a.baseline, B), (a.candidate, C)):
        for r in sorted((s or {}).get("runs", []), key=lambda r: filters.index(r["filter"])):
            if r.get("error"):
                print(f"| {name} | {r['filter']} | {r['setting']} | ERROR: {r['error'][:100]} | | | | | |")
                continue
            print(f"| {name} | {r['filter']} | {r['setting']} | {num(r['recall'], 3)} | {num(r['qps'])} | "
                  f"{num(r['p50'], 2)} | {num(r['p99'], 2)} | {num(r['short'])} | {num(r['errors'])} |")

    print("\n### machine and servers\n")
    m = ref["machine"]
    print(f"- machine: {m.get('nproc')} cores ({m.get('cpu_model')}), "
          f"{num((m.get('mem_total_kb') or 0) / 1048576, 1)} GiB, {m.get('platform')}, "
          f"load at start {' '.join(m.get('loadavg_at_start') or [])}")
    for name, s in ((a.baseline, B), (a.candidate, C)):
        if s:
            v = s["server"]
            print(f"- {name}: {v.get('version') or v.get('server_version')}"
                  + (f"; extension {v['extension_version']}" if v.get("extension_version") else "")
                  + f"; param_mode={s['param_mode']}; load avg at start "
                  + " ".join(s["machine"].get("loadavg_at_start") or []) + f"; files {', '.join(s['files'])}")
        else:
            print(f"- {name}: no results")
    if a.machine and a.machine.exists():
        print("\n```\n" + a.machine.read_text().rstrip() + "\n```")


if __name__ == "__main__":
    main()
