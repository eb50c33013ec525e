"""`vitalstream eval peaks` and `vitalstream eval resp`: DSP accuracy on real recordings."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream.settings import Settings

err = Console(stderr=True)


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[str], None]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[record]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, record="")

        def step(name: str) -> None:
            bar.update(task, advance=1, record=name)

        yield step


def _records(option: str | None) -> list[str] | None:
    return [r.strip() for r in option.split(",") if r.strip()] if option else None


def _data_dir(option: Path | None, sub: str) -> Path:
    path = option if option is not None else Path(Settings.from_env().data_dir) / sub
    if not path.is_dir():
        err.print(f"[red]error:[/] data folder {path} not found")
        raise typer.Exit(2)
    return path


def peaks(
    data_dir: Path = typer.Option(
        None, "--data-dir", help="MIT-BIH folder (default <data_dir>/mitdb)."
    ),
    records: str = typer.Option(None, "--records", help="Comma-separated records (default: all)."),
    chunk_s: float = typer.Option(
        1.0, "--chunk-s", help="Chunk length fed to the streaming detector."
    ),
    noise: str = typer.Option(
        None, "--noise", help="Add MIT-BIH noise-stress noise: ma, bw (from <data_dir>/nstdb)."
    ),
    snr_db: float = typer.Option(6.0, "--snr-db", help="SNR of the added noise (dB)."),
    monitor: bool = typer.Option(
        True, "--monitor/--no-monitor", help="Also score per-window HR through PatientMonitor."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Streaming R-peak detection vs reference beat annotations (Se/PPV %, 150 ms window)."""
    from stream.dsp_eval import evaluate_peaks, list_records

    folder = _data_dir(data_dir, "mitdb")
    names = _records(records) or list_records(folder)
    absent = [n for n in names if not (folder / f"{n}.hea").is_file()]
    if absent:
        err.print(f"[red]error:[/] no such record in {folder}: {', '.join(absent)}")
        raise typer.Exit(2)
    with _progress("R peaks", len(names)) as step:
        result = evaluate_peaks(
            folder,
            names,
            chunk_s=chunk_s,
            progress=step,
            monitor=monitor,
            noise=noise,
            snr_db=snr_db,
        )
    if as_json:
        print(json.dumps(result))
        return
    table = Table("record", "beats", "FN", "FP", "Se %", "PPV %")
    for name, r in result["per_record"].items():  # type: ignore[union-attr]
        table.add_row(
            name, str(r["beats"]), str(r["fn"]), str(r["fp"]), f"{r['se']:.2f}", f"{r['ppv']:.2f}"
        )
    table.add_row(
        "all",
        str(result["beats"]),
        str(result["fn"]),
        str(result["fp"]),
        f"{result['se']:.3f}",
        f"{result['ppv']:.3f}",
    )
    out = Console(file=sys.stdout)
    out.print(table)
    if "monitor" in result:
        m = result["monitor"]
        out.print(
            f"PatientMonitor windows: {m['windows']}, ECG usable {m['usable_pct']} %, "
            f"HR MAE {m['hr_mae_bpm']} bpm, within 5 bpm {m['hr_within_5bpm_pct']} %"
        )


def resp(
    data_dir: Path = typer.Option(
        None, "--data-dir", help="BIDMC folder (default <data_dir>/bidmc)."
    ),
    records: str = typer.Option(
        None, "--records", help="Comma-separated records, e.g. 01,04 (default: all)."
    ),
    window_s: float = typer.Option(32.0, "--window-s", help="Window length for the rate estimate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Breathing rate from RESP, PPG alone and ECG alone vs breath annotations (MAE, /min)."""
    from stream.dsp_eval import bidmc_names, evaluate_resp
    from stream.replay.records import bidmc_candidates

    folder = _data_dir(data_dir, "bidmc")
    names = bidmc_names(folder, _records(records))
    absent = [(n, bidmc_candidates(folder, n, kind)) for n in names for kind in ("Signals", "Breaths", "Numerics")
              if not any(p.is_file() for p in bidmc_candidates(folder, n, kind))]
    if absent:
        for n, paths in absent:
            err.print(f"[red]error:[/] no such record in {folder}: {n} (looked for "
                      f"{' and '.join(p.name for p in paths)})")
        raise typer.Exit(2)
    with _progress("breathing rate", len(names)) as step:
        result = evaluate_resp(folder, names, window_s=window_s, progress=step)
    if as_json:
        print(json.dumps(result))
        return
    table = Table("record", "windows", "MAE RESP", "MAE PPG", "MAE ECG", "pulse MAE")
    rows = [*result["per_record"].items(), ("all", result)]  # type: ignore[union-attr]
    for name, r in rows:
        cells = [r["windows"], r["mae_resp"], r["mae_ppg"], r["mae_ecg"], r["pulse_rate_mae_bpm"]]
        table.add_row(name, *(str(c) for c in cells))
    Console(file=sys.stdout).print(table)
