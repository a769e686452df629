"""Where changes come from: each proposer kind turns a Context into a Proposal.

The registry: one line per built-in kind, naming the module whose `KIND` gives the kind's
study.yaml model and its factory; other distributions add kinds through the entry-point group
`autoresearch.proposers` (name: the kind, value: its module). A module is imported only when
its kind is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.entrypoints import Registry

if TYPE_CHECKING:
    from core.study import ProposerConfig, Study
    from proposers.base import Kind, Proposer

KINDS = Registry(
    "proposer",
    "autoresearch.proposers",
    {
        "auto": "proposers.auto",  # claude with ANTHROPIC_API_KEY, else mutate
        "mutate": "proposers.mutate",
        "optuna": "proposers.optuna",
        "claude": "proposers.claude",
        "agent_cli": "proposers.agent_cli",
        "portfolio": "proposers.portfolio",  # several of the others, drawn by a bandit
    },
)


def kind(name: str) -> Kind:
    try:
        return KINDS.load(name).KIND
    except ModuleNotFoundError as exc:  # an optional dependency: optuna is in the extra `search`
        raise ValueError(
            f"proposer {name} needs the package {exc.name}, which is not installed "
            f"(pip install -e '.[search]' installs optuna's)"
        ) from None


def writes_code(name: str) -> bool:
    """Whether candidates of the proposer called `name` (as results.tsv names it) may hold code
    a model wrote: any name that is not a kind of ours may. A portfolio's member is named
    `kind:name`, read as its kind; a portfolio itself `portfolio:a+b` (its members' names),
    which writes code when one of its members does."""
    if name in KINDS:
        return kind(name).writes_code
    base, colon, rest = name.partition(":")
    if not colon or base not in KINDS:
        return True
    if base == "portfolio":
        return any(writes_code(member) for member in rest.split("+"))
    return kind(base).writes_code


def config_for(study: Study, name: str) -> ProposerConfig:
    """The study's proposer section as kind `name` reads it: as written when the study names that
    kind, else the options the two kinds share (for a `--proposer` override)."""
    written = study.config.proposer
    model = kind(name).config
    if isinstance(written, model):
        return written
    offline = getattr(written, "offline", None)  # auto's own choice of an offline proposer
    if offline and offline.get("kind") == name:
        return model.model_validate(offline)
    given = written.model_dump(exclude_unset=True)
    shared = {k: v for k, v in given.items() if k in model.model_fields and k != "kind"}
    return model.model_validate(shared)


def choose_kind(study: Study, override: str | None = None) -> tuple[str, str]:
    """The proposer kind to use and why (a kind with `resolve`, as `auto`, is resolved here)."""
    name = override or study.config.proposer.kind
    chosen = kind(name)
    if chosen.resolve is None:
        return name, f"proposer {name} (asked for)"
    written = study.config.proposer
    return chosen.resolve(written if isinstance(written, chosen.config) else chosen.config())


def make_proposer(study: Study, name: str, seed: int | None = None) -> Proposer:
    """A proposer of kind `name` (not `auto`: resolve it with choose_kind first)."""
    return kind(name).create(config_for(study, name), seed)
