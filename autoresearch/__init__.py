"""autoresearch: autonomous hill-climbing of one artifact against one fixed evaluator.

This package is the top of the house: the `autoresearch` command and the Prefect server it
starts. The layers below it are core/ (the base), proposers/ and evaluators/ (the plugins),
steps/ (a study's steps and reports), tasks/ and flows/ (Prefect).
"""
