"""The fixed test suite of the prompt-suite study (protected): inputs and the checks on answers.

Each answer must be a JSON triage note {"title", "severity", "component"}. 10 cases x 4 checks:
the score is passes / 40.
"""

import json

CASES = [
    "Since this morning the checkout page spins forever when a customer pays with a gift card. "
    "Card payments still work. Hundreds of orders are stuck.",
    "The settings screen shows the wrong time zone for users in Australia; it says UTC.",
    "Typo on the login page: 'Pasword' instead of 'Password'.",
    "Our nightly export job to the warehouse crashed with an out-of-memory error and the "
    "dashboards are empty today.",
    "When I upload a PNG larger than 10 MB to the avatar uploader, the app freezes for a minute.",
    "Search returns no results for any query containing an apostrophe, like O'Brien.",
    "The password reset email links to the staging server instead of production. Users cannot "
    "reset their passwords.",
    "Dark mode: the tooltip text in the editor is black on a dark grey background, hard to read.",
    "The API returns 500 for /v2/invoices when the customer has no address on file.",
    "Push notifications arrive twice on Android 14 devices since the last release.",
]

SEVERITIES = {"low", "medium", "high", "critical"}


def _note(output: str) -> dict:
    text = output.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
    note = json.loads(text)
    return note if isinstance(note, dict) else {}


def is_json_note(output: str, case: str) -> bool:
    """The answer is a JSON object with exactly the keys title, severity and component."""
    return set(_note(output)) == {"title", "severity", "component"}


def short_title(output: str, case: str) -> bool:
    """The title fits in a ticket list: at most 60 characters, not empty."""
    title = str(_note(output).get("title", ""))
    return 0 < len(title) <= 60


def known_severity(output: str, case: str) -> bool:
    """Severity is one of low, medium, high, critical."""
    return str(_note(output).get("severity", "")).lower() in SEVERITIES


def component_from_report(output: str, case: str) -> bool:
    """The component is named in the report itself (no invented components)."""
    component = str(_note(output).get("component", "")).lower().strip()
    return bool(component) and component in case.lower()


CHECKS = [is_json_note, short_title, known_severity, component_from_report]
RUBRIC: list[str] = []  # e.g. "Is the severity right for the user impact described?"
