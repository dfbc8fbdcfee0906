"""Resident memory of ``sasrec-tf serve`` around the largest request its limits allow.

Exports a small generated model (random weights; memory does not depend on training) with a
catalogue of ``--items`` items into ``--out``, starts ``sasrec-tf serve`` on it in a subprocess
and sends ``--repeats`` Predict requests of ``--rows`` one-item histories (default: the most rows
the default ``max_request_cells`` admits, rows x (items + 1) <= 2**25). Reads the server's
``/proc/PID/status`` before the first request, after each one (``VmRSS``) and its peak
(``VmHWM``), 2 s after each reply. ``--trim`` makes the server call glibc's ``malloc_trim(0)`` after
each request (via ``ctypes``), to see whether freed heap is what stays resident.

    python benchmarks/serving_memory.py --out /tmp/serving_memory
    python benchmarks/serving_memory.py --out /tmp/serving_memory --trim
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()

from sasrec_tf.export import export_saved_model  # noqa: E402
from sasrec_tf.serving import PredictionClient  # noqa: E402
from sasrec_tf.serving.options import DEFAULTS  # noqa: E402
from sasrec_tf.testing import free_ports  # noqa: E402
from sasrec_tf.testing.models import make_trained  # noqa: E402

_SERVE = ("import ctypes, sys\n"
          "if sys.argv[1] == 'trim':\n"
          "    import sasrec_tf.serving.servable as servable\n"
          "    run, trim = servable.Servable.run, ctypes.CDLL('libc.so.6').malloc_trim\n"
          "    servable.Servable.run = lambda self, *a, **k: (run(self, *a, **k), trim(0))[0]\n"
          "from sasrec_tf.cli import main\n"
          "sys.exit(main(['serve', '--model-base', sys.argv[2], '--port', sys.argv[3], '--poll-seconds', '0']))\n")


def resident_mib(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` (the peak) of a process in MiB (``/proc/PID/status``, Linux)."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


def measure(base: Path, rows: int, repeats: int, trim: bool) -> dict:
    [port] = free_ports(1)
    server = subprocess.Popen([sys.executable, "-c", _SERVE, "trim" if trim else "plain", str(base), str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        if " on 127.0.0.1:" not in line:
            raise RuntimeError(f"the server did not start: {line!r}")
        before = resident_mib(server.pid)
        after = []
        with PredictionClient(f"127.0.0.1:{port}", "sasrec", timeout=600, max_batch_size=None) as client:
            histories = [["sku-1"]] * rows
            for _ in range(repeats):
                started = time.perf_counter()
                client.recommend(histories)
                seconds = time.perf_counter() - started
                time.sleep(2)  # what the server frees after the reply is freed by then
                after.append({**resident_mib(server.pid), "seconds": round(seconds, 2)})
        return {"trim": trim, "rows": rows, "before_rss_mib": round(before["VmRSS"], 1),
                "before_peak_mib": round(before["VmHWM"], 1),
                "after": [{key: round(value, 1) for key, value in row.items()} for row in after]}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for the export (created)")
    parser.add_argument("--items", type=int, default=150)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trim", action="store_true", help="the server calls malloc_trim(0) after each request")
    args = parser.parse_args()
    rows = args.rows or DEFAULTS.max_request_cells // (args.items + 1)
    out = Path(args.out)
    if not (out / "sasrec").is_dir():
        export_saved_model(make_trained(num_items=args.items), out, "sasrec", k=10)
    results = [measure(out, rows, args.repeats, trim=args.trim)]
    for result in results:
        peak = max(row["VmHWM"] for row in result["after"])
        rss = ", ".join(f"{row['VmRSS']:.0f}" for row in result["after"])
        print(f"trim={result['trim']!s:5} rows={rows:,}: RSS before {result['before_rss_mib']:.0f} MiB, "
              f"peak {peak:.0f} MiB (+{peak - result['before_rss_mib']:.0f}), RSS after each request {rss} MiB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
