"""Coverage-guided fuzzing of every message decoder with atheris (libFuzzer for Python).

    python -m fuzz.run --runs 100000             # every decoder, 100k inputs each
    python -m fuzz.run --runs 20000 --targets finding,chunk-json --json out.json

Each decoder runs in its own process (libFuzzer exits the process when done), with the
project's modules instrumented for coverage and a corpus seeded with valid messages. JSON
decoders get a custom mutator: half the mutations are structural (fuzz/mutations.py: a
field's type, size, presence, nesting), half libFuzzer's own byte mutations. A contract
violation (fuzz/targets.py) does not stop the run: the input is saved under
``--crash-dir`` and counted, so the report gives inputs tried and crashes per decoder.
Exit status 1 if any decoder crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JSON_TARGETS = {"chunk-json", "finding", "alert-action", "device-alarm", "dead-letter", "alert-input"}


def _fuzz_one(name: str, runs: int, max_len: int, corpus: Path, crash_dir: Path, stats_path: Path) -> None:
    """Runs inside the child process; never returns (libFuzzer exits)."""
    import atheris
    import numpy  # noqa: F401 - imported before instrumentation: not instrumented
    import scipy.signal  # noqa: F401

    with atheris.instrument_imports(include=["stream", "alerting"]):
        from fuzz.targets import TARGETS, ContractViolation, run_one
    from fuzz.mutations import mutate_bytes

    target = TARGETS[name]
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    stats = {"target": name, "where": target.where, "inputs": 0, "accepted": 0, "crashes": 0,
             "crash_kinds": {}, "started": time.time()}

    def save() -> None:
        stats["elapsed_s"] = round(time.time() - stats["started"], 1)
        stats_path.write_text(json.dumps(stats))

    def one_input(data: bytes) -> None:
        stats["inputs"] += 1
        try:
            if run_one(target, data):
                stats["accepted"] += 1
        except ContractViolation as exc:
            stats["crashes"] += 1
            kind = str(exc).split(":")[1].strip() if ":" in str(exc) else str(exc)
            kinds = stats["crash_kinds"]
            kinds[kind] = kinds.get(kind, 0) + 1
            crash_dir.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha1(data).hexdigest()[:12]
            (crash_dir / f"{name}-{digest}.bin").write_bytes(data)
            (crash_dir / f"{name}-{digest}.txt").write_text(f"{exc}\ncaused by: {exc.__cause__!r}\n")
            save()
        if stats["inputs"] % 2000 == 0 or stats["inputs"] >= runs:
            save()

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            out = mutate_bytes(data, rng, max_size)
            if out is not None:
                return out
        return atheris.Mutate(data, max_size)

    save()
    argv = [sys.argv[0], f"-runs={runs}", f"-max_len={max_len}", "-rss_limit_mb=4096", "-timeout=30",
            "-print_final_stats=1", str(corpus)]
    if name in JSON_TARGETS:
        atheris.Setup(argv, one_input, custom_mutator=mutator)
    else:
        atheris.Setup(argv, one_input)
    atheris.Fuzz()


def run_all(names: list[str], runs: int, max_len: int, work: Path, crash_dir: Path) -> list[dict[str, object]]:
    results = []
    for name in names:
        stats_path = work / f"{name}.stats.json"
        log_path = work / f"{name}.log"
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.run(
                [sys.executable, "-m", "fuzz.run", "--one", name, "--runs", str(runs), "--max-len", str(max_len),
                 "--corpus", str(work / f"corpus-{name}"), "--crash-dir", str(crash_dir), "--stats", str(stats_path)],
                stdout=log, stderr=subprocess.STDOUT, check=False,
            )
        text = log_path.read_text(errors="replace")
        done = re.search(r"Done (\d+) runs in (\d+) second", text)
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {"crashes": None}
        result = {
            "target": name,
            "decoder": stats.get("where"),
            # libFuzzer's own count of executions (its final "Done N runs").
            "inputs": int(done.group(1)) if done else stats.get("inputs"),
            "accepted": stats.get("accepted"),
            "crashes": stats.get("crashes"),
            "crash_kinds": stats.get("crash_kinds", {}),
            "wall_s": round(time.monotonic() - started, 1),
            "exit_code": proc.returncode,
            "completed": bool(done),
        }
        cov = re.findall(r"cov: (\d+) ft: (\d+)", text)
        if cov:
            result["coverage_edges"] = int(cov[-1][0])
        results.append(result)
        print(f"{name:13s} inputs {result['inputs']!s:>8}  accepted {result['accepted']!s:>7}  "
              f"crashes {result['crashes']!s:>3}  coverage {result.get('coverage_edges', '?')!s:>5}  "
              f"{result['wall_s']:7.1f} s  {'' if done else '(did not complete, see ' + str(log_path) + ')'}",
              flush=True)
    return results


def main() -> int:
    if "--one" in sys.argv:
        # The child: the project's modules must be first imported under instrumentation.
        child = argparse.ArgumentParser()
        for flag in ("--one", "--corpus", "--stats", "--crash-dir"):
            child.add_argument(flag)
        child.add_argument("--runs", type=int)
        child.add_argument("--max-len", type=int)
        a = child.parse_args()
        sys.argv = sys.argv[:1]
        _fuzz_one(a.one, a.runs, a.max_len, Path(a.corpus), Path(a.crash_dir), Path(a.stats))
        return 0
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per decoder")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, of: " + ", ".join(TARGETS))
    parser.add_argument("--max-len", type=int, default=16384)
    parser.add_argument("--work-dir", type=Path, default=None, help="corpora and logs (default: a temp dir)")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; one of {', '.join(TARGETS)}")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="vitalstream-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"atheris: {args.runs} inputs per decoder, {len(names)} decoder(s); corpora and logs in {work}", flush=True)
    results = run_all(names, args.runs, args.max_len, work, args.crash_dir)
    total_inputs = sum(int(r["inputs"] or 0) for r in results)
    total_crashes = sum(int(r["crashes"] or 0) for r in results)
    incomplete = [r["target"] for r in results if not r["completed"]]
    print(f"total: {total_inputs} inputs, {total_crashes} crashes"
          + (f"; incomplete: {', '.join(incomplete)}" if incomplete else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs_per_decoder": args.runs, "python": sys.version.split()[0],
                                         "results": results, "total_inputs": total_inputs,
                                         "total_crashes": total_crashes}, indent=2))
    return 1 if total_crashes or incomplete else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
