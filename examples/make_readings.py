"""Writes examples/readings.csv: hourly readings of 40 simulated air-quality sensors over two
days (privcity.data.environment_records, seed 7), the sample file the README's CSV commands
read. Run from the repository's root: python examples/make_readings.py"""
from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

from privcity.data import environment_records

COLUMNS = ("temperature", "humidity", "wind_speed", "rain", "traffic_count", "no2", "pm25")


def main() -> None:
    rec = environment_records(n_devices=40, samples_per_device=48, seed=7)
    out = Path(__file__).with_name("readings.csv")
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sensor_id", "time", "district", *COLUMNS])
        for d, device in enumerate(rec.device_ids):
            for i in range(int(rec.offsets[d]), int(rec.offsets[d + 1])):
                when = datetime.fromtimestamp(int(rec.time[i]), timezone.utc)
                w.writerow([f"sensor-{device:03d}", when.strftime("%Y-%m-%d %H:%M:%S"),
                            f"D{int(rec.column('district')[i])}",
                            *(f"{rec.column(c)[i]:.2f}" for c in COLUMNS)])


if __name__ == "__main__":
    main()
