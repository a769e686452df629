"""Cold email A/B tests, a plugin of its own: the `sendgrid` evaluator kind (batches sent
through SendGrid, or to a simulated audience on a simulated clock), its mail store, and the
inbox that `autoresearch inbox` serves for SendGrid's webhooks and replies.

It reaches the tool the way any other distribution's plugin does: pyproject.toml declares its
kind in the entry-point group `autoresearch.evaluators`. It imports core/ and evaluators/ only;
autoresearch/ (the `inbox` command) imports it.
"""
