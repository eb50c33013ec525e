"""The verifier's training data: CinC 2015 records replayed through the pipeline in process,
one :class:`~models.verifier_training.AlarmSample` per bedside alarm.

The findings around each alarm are the ones the worker would publish (the same
``VitalsPipeline`` on the same chunks, cut at the alarm as in the real-time challenge), and
the sample is built from them by the functions the aggregator runs. The replay takes a few
minutes on two cores, so the samples are cached, keyed by the records and by the code and
weights that produce findings: any change to either replays again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from models.verifier_features import LOOKBACK_S
from models.verifier_training import AlarmSample, sample_from_findings
from stream.findings import VitalsFinding
from stream.replay.records import CHALLENGE2015_ALARM_S, Recording
from stream.replay.scoring import CHALLENGE2015_ALERT_TYPES

# Findings kept before each alarm: the lookback plus a margin (the rows are cheap).
CAPTURE_S = LOOKBACK_S + 10.0
_PIPELINE_CODE = ("stream/monitor.py", "stream/pipeline.py", "stream/windows.py", "stream/findings.py",
                  "stream/dsp", "models/runtime.py", "models/preprocess.py", "models/vf.py", "models/sveb.py",
                  "models/architecture.py", "models/weights",
                  "stream/replay/replayer.py", "stream/replay/records.py")


def _code_hash() -> str:
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for rel in _PIPELINE_CODE:
        path = root / rel
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".py", ".pt", ".json")
                       and p.name != "verifier.json") if path.is_dir() else [path]
        for f in files:
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def cache_path(cache_dir: Path, recordings: Sequence[Recording], window_s: float, hop_s: float) -> Path:
    names = hashlib.sha256(",".join(sorted(r.name for r in recordings)).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"verifier_samples_{names}_{window_s:g}_{hop_s:g}_{_code_hash()}.json"


def alarm_samples(recordings: Sequence[Recording], *, window_s: float = 10.0, hop_s: float = 2.0,
                  jobs: int | None = None, cache_dir: Path | None = None,
                  progress: Callable[[str, int, int], None] | None = None) -> list[AlarmSample]:
    """One sample per bedside alarm of ``recordings`` (CinC 2015, data cut at the alarm)."""
    from stream.replay.in_process import run_in_process

    cache = cache_path(cache_dir, recordings, window_s, hop_s) if cache_dir else None
    if cache is not None and cache.exists():
        return [_sample_from_json(obj) for obj in json.loads(cache.read_text())]
    result = run_in_process(recordings, stops=[CHALLENGE2015_ALARM_S] * len(recordings), window_s=window_s,
                            hop_s=hop_s, jobs=jobs, progress=progress, device_alarms=False, capture_s=CAPTURE_S)
    base_ms = result.stats.base_ms
    samples: list[AlarmSample] = []
    raw: list[dict[str, Any]] = []
    for rec in recordings:
        findings = result.alarm_findings.get(rec.patient_id, [])
        for alarm in rec.annotations.alarms:
            alarm_type = CHALLENGE2015_ALERT_TYPES.get(alarm.alarm_type)
            if alarm_type is None or alarm.time_s > CHALLENGE2015_ALARM_S:
                continue
            alarm_ms = base_ms + round(1000.0 * alarm.time_s)
            samples.append(sample_from_findings(rec.name, alarm_type, alarm.is_true, alarm_ms, findings))
            raw.append({"record": rec.name, "alarm_type": alarm_type, "is_true": alarm.is_true,
                        "alarm_ms": alarm_ms, "findings": [json.loads(f.to_json()) for f in findings]})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(raw))
    return samples


def _sample_from_json(obj: dict[str, Any]) -> AlarmSample:
    findings = [VitalsFinding.from_dict(f) for f in obj["findings"]]
    return sample_from_findings(obj["record"], obj["alarm_type"], obj["is_true"], obj["alarm_ms"], findings)
