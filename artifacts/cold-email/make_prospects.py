"""Write prospects.csv.gz: fake people at fake companies (protected; run once, committed).

Every address is under example.com or example.org (RFC 2606: reserved, never delivered), so
the bundled list can never mail a real person. Seeded: the same file every time.

    python make_prospects.py [ROWS]     # default 40000
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import sys
from pathlib import Path

FIRST = (
    "Amelia Ava Ben Carlos Chen Chloe Daniel Diego Elena Emma Fatima Felix Grace Hana Hugo "
    "Ines Isaac Jack James Julia Kai Leila Liam Lucas Maya Mei Mia Nadia Noah Nora Olivia Omar "
    "Priya Rafael Rosa Ruth Sam Sara Sofia Tariq Theo Uma Victor Wei Yara Yusuf Zoe Anna Kofi"
).split()
LAST = (
    "Adams Ahmed Alvarez Baker Brown Chen Costa Davis Diaz Evans Fischer Garcia Gupta Hall "
    "Hansen Ito Jensen Khan Kim Kowalski Lee Lopez Martin Meyer Moreau Murphy Nakamura Nguyen "
    "Novak Okafor Patel Perez Rossi Santos Schmidt Silva Singh Smith Tanaka Taylor Wagner "
    "Walker Wang Weber White Wilson Wright Young Zhang Mensah"
).split()
WORDS = (
    "North Blue Bright Clear Swift Harbor Summit Cedar Iron Maple Apex Nova Pioneer Quartz "
    "River Silver Stone Sun Tide Vector Willow Atlas Beacon Canyon Delta Ember Falcon Granite"
).split()
KINDS = "Labs Analytics Logistics Health Systems Foods Energy Retail Robotics Media".split()
TITLES = (
    ("Founder", 8),
    ("CEO", 8),
    ("VP Sales", 20),
    ("Head of Sales", 18),
    ("Sales Director", 18),
    ("Sales Manager", 18),
    ("Revenue Operations Lead", 10),
)
INDUSTRIES = "software logistics healthcare manufacturing retail finance media energy".split()
CITIES = "Austin Berlin Boston Chicago Denver Dublin Lisbon London Madrid Toronto".split()
DOMAINS = ("example.com", "example.org")


def rows(n: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    titles = [t for t, _ in TITLES]
    weights = [w for _, w in TITLES]
    out, seen = [], set()
    while len(out) < n:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(KINDS)}"
        if len(set(company.split()[:2])) < 2:
            continue
        slug = "".join(w[:4] for w in company.lower().split())
        email = f"{first[0]}{last}@{slug}.{rng.choice(DOMAINS)}".lower()
        if email in seen:
            continue
        seen.add(email)
        out.append(
            {
                "email": email,
                "first_name": first,
                "last_name": last,
                "company": company,
                "title": rng.choices(titles, weights)[0],
                "industry": rng.choice(INDUSTRIES),
                "city": rng.choice(CITIES),
            }
        )
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40000
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows(1)[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(n))
    path = Path(__file__).with_name("prospects.csv.gz")
    # mtime=0: the same bytes every time, so the protected hash does not change on a rerun
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.getvalue().encode())
    print(f"wrote {n} prospects to {path.name} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
