"""Per-stage wall time and peak memory of a running pipeline, from outside it: polls /proc every second for
`python stages/X.py` processes and appends one JSON line per finished stage process (its working directory, stage
script, arguments, start, wall seconds, peak RSS from VmHWM). DVC records no stage durations, and a poller needs no
change to the stages: start it beside `prunetune study` or `dvc repro`, stop it after.

    python scripts/stage_monitor.py reports/bench/smollm2-stages.jsonl &
"""

import json
import os
import sys
import time


def main() -> None:
    out = open(sys.argv[1], "a")  # noqa: SIM115 (held open for the poller's life)
    seen: dict[str, dict] = {}
    while True:
        now = time.time()
        alive = set()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                command = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                if len(command) < 2 or not command[1].startswith(b"stages/"):
                    continue
                status = open(f"/proc/{pid}/status").read().splitlines()
                peak_kb = int(next(line for line in status if line.startswith("VmHWM")).split()[1])
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except (OSError, StopIteration):
                continue
            alive.add(pid)
            args = [part.decode() for part in command[2:] if part]
            entry = seen.setdefault(pid, {"cwd": cwd, "stage": command[1].decode(), "args": args, "start": now})
            entry["peak_rss_mb"] = max(entry.get("peak_rss_mb", 0), peak_kb / 1024)
            entry["last"] = now
        for pid in [p for p in seen if p not in alive]:
            entry = seen.pop(pid)
            entry["wall_s"] = round(entry["last"] - entry["start"], 1)
            out.write(json.dumps(entry) + "\n")
            out.flush()
        time.sleep(1)


if __name__ == "__main__":
    main()
