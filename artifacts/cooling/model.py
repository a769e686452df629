"""Predict the temperature of a cup of tea as it cools (Newton's law of cooling).

This is the editable file of the bundled example study: the researcher changes it, the fixed
evaluate.py scores it on measurements it never sees (scoring/valid.csv, hidden from it).
"""

import math

ROOM_C = 20.0  # temperature of the room
START_C = 90.0  # temperature when the tea is poured
RATE = 0.05  # cooling rate, per minute


def predict(minute: float) -> float:
    """Temperature in degrees Celsius, `minute` minutes after pouring."""
    return ROOM_C + (START_C - ROOM_C) * math.exp(-RATE * minute)
