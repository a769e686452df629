"""The base layer: study config, ledger, state, decision rules, workspace, learnings, lock,
processes, secrets. Plain Python; it imports nothing of ours above it, and no Prefect."""
