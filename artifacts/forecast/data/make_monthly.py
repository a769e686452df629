"""Derive co2_monthly.csv from co2_weekly.csv; run once, the result is committed.

co2_weekly.csv: Mauna Loa weekly atmospheric CO2 (ppmv), March 1958 - December 2001, public
domain (C.D. Keeling and T.P. Whorf, Scripps Institution of Oceanography, via CDIAC), as shipped
in statsmodels' `datasets/co2/co2.csv`. Weekly means are averaged per calendar month; the few
months with no valid week are filled by linear interpolation so the series has no gaps.

    python data/make_monthly.py      # from artifacts/forecast
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def monthly(weekly_csv: Path) -> pd.DataFrame:
    """Monthly means of the weekly readings, gaps interpolated, rounded like the source (0.01)."""
    raw = pd.read_csv(weekly_csv, dtype={"date": str})
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    series = raw.set_index("date")["co2"].resample("MS").mean().interpolate("linear")
    out = series.round(2).reset_index()
    out["date"] = out["date"].dt.strftime("%Y-%m")
    return out


def main() -> None:
    frame = monthly(HERE / "co2_weekly.csv")
    frame.to_csv(HERE / "co2_monthly.csv", index=False)
    print(f"wrote {len(frame)} months, {frame['date'].iloc[0]} .. {frame['date'].iloc[-1]}")


if __name__ == "__main__":
    main()
