"""autoresearch: autonomous hill-climbing of one artifact against one fixed evaluator.

The core in this package is plain Python: no Prefect import anywhere in it.
"""
