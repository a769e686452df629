"""An offline copywriter for the cold-email study (protected): one rewrite per experiment.

It stands in for a model when there is no API key, as an `agent_cli` command run in the study
folder of the worktree:

    python copywriter.py {prompt_file}      (or the prompt on standard input)

It knows a handful of rewrites a copywriter would try, good ideas and plausible bad ones alike,
applies one that the current copy does not have yet and that the history in the prompt does not
show as tried, and prints `HYPOTHESIS: [Cnn] what, because why` as its last line. The choice is
seeded by COPYWRITER_SEED, else by the experiment number in the prompt (`# Experiment N`).
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Copy = tuple[str, str]  # subject, body
SIGN_OFF = re.compile(
    r"^(best|thanks|cheers|regards|kind regards|best regards|all the best)\b", re.I
)
SPAMMY = re.compile(
    r"\b(free|guarantee[ds]?|limited time|no risk|risk-free|act now|best on the market)\b", re.I
)
URL = re.compile(r"https?://\S+?(?=[.,;!?]?(\s|$))")


def paragraphs(body: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n\s*\n", body.strip("\n"))]


def join(paras: list[str]) -> str:
    return "\n\n".join(paras) + "\n"


def sign_off_index(paras: list[str]) -> int:
    """Where the sign-off paragraph starts (len(paras) when there is none)."""
    for i in range(len(paras) - 1, 0, -1):
        if SIGN_OFF.match(paras[i].strip()):
            return i
    return len(paras)


def words(text: str) -> int:
    return len(re.findall(r"[A-Za-z][A-Za-z']*", text))


# Rewrites: each returns the new copy, or None when the copy has it already ----------------


def question_subject(subject: str, body: str) -> Copy | None:
    if subject.strip().endswith("?"):
        return None
    return "Quick question about {company}'s pipeline?\n", body


def short_subject(subject: str, body: str) -> Copy | None:
    if len(subject.split()) <= 4:
        return None
    return "{company} and Brightline\n", body


def calm_subject(subject: str, body: str) -> Copy | None:
    shouted = [w for w in subject.split() if w.isupper() and len(w) >= 3]
    if not shouted:
        return None
    for w in shouted:
        subject = subject.replace(w, w.lower())
    return subject, body


def greet_by_name(subject: str, body: str) -> Copy | None:
    paras = paragraphs(body)
    if "{first_name}" in paras[0]:
        return None
    paras[0] = "Hi {first_name},"
    return subject, join(paras)


def formal_greeting(subject: str, body: str) -> Copy | None:
    paras = paragraphs(body)
    if paras[0].startswith("Dear"):
        return None
    paras[0] = "Dear Sir or Madam,"
    return subject, join(paras)


def company_opener(subject: str, body: str) -> Copy | None:
    if "{company}" in body:
        return None
    paras = paragraphs(body)
    paras.insert(1, "I saw that {company} is growing its sales team, so this may be timely.")
    return subject, join(paras)


def clear_ask(subject: str, body: str) -> Copy | None:
    if re.search(r"minute[^?]*\?", body):
        return None
    paras = paragraphs(body)
    end = sign_off_index(paras)
    ask = "Would a 15-minute call next Tuesday be worth it, to see if this fits {company}?"
    paras[end - 1] = ask
    return subject, join(paras)


def shorten(subject: str, body: str) -> Copy | None:
    if words(body) <= 110:
        return None
    paras = paragraphs(body)
    end = sign_off_index(paras)
    middle = [i for i in range(1, end - 1) if not URL.search(paras[i]) and "?" not in paras[i]]
    if not middle:
        return None
    longest = max(middle, key=lambda i: words(paras[i]))
    del paras[longest]
    return subject, join(paras)


def drop_spam(subject: str, body: str) -> Copy | None:
    if not SPAMMY.search(body):
        return None
    kept = []
    for para in paragraphs(body):
        sentences = re.split(r"(?<=[.!?])\s+", para)
        clean = [s for s in sentences if not SPAMMY.search(s)]
        if clean:
            kept.append(" ".join(clean))
    return subject, join(kept)


def one_link(subject: str, body: str) -> Copy | None:
    if len(URL.findall(body)) < 2:
        return None
    first = URL.search(body)
    assert first is not None
    head, tail = body[: first.end()], body[first.end() :]
    tail = re.sub(r"\s+and [^.\n]*?https?://\S+?(?=[.,;!?]?(\s|$))", "", tail)
    tail = URL.sub("", tail) if URL.search(tail) else tail
    return subject, head + tail


def no_exclamations(subject: str, body: str) -> Copy | None:
    if "!" not in subject + body:
        return None
    return subject.replace("!", ""), body.replace("!", ".")


def postscript(subject: str, body: str) -> Copy | None:
    if "P.S." in body:
        return None
    text = "P.S. Teams like yours usually book their first extra meetings within two weeks."
    return subject, body.rstrip("\n") + "\n\n" + text + "\n"


def you_focus(subject: str, body: str) -> Copy | None:
    swaps = {
        "We are a fast-growing company and we have built an": "You get an",
        "that we believe is the best on the market": "that fits the way your team sells",
        "Our platform combines": "It gives you",
        "and our customers love it": "so your reps spend their time selling",
        "our onboarding team will set everything up for you": "you can be live in a day",
    }
    found = [old for old in swaps if old in body]
    if not found:
        return None
    for old in found:
        body = body.replace(old, swaps[old])
    return subject, body


def urgent_subject(subject: str, body: str) -> Copy | None:
    if subject.startswith("LAST CHANCE"):
        return None
    return "LAST CHANCE: free trial for {company} ends Friday!\n", body


def demo_link(subject: str, body: str) -> Copy | None:
    if "/demo" in body:
        return None
    paras = paragraphs(body)
    end = sign_off_index(paras)
    paras.insert(end - 1, "Watch our 2-minute demo: https://brightline.example.com/demo")
    return subject, join(paras)


def feature_list(subject: str, body: str) -> Copy | None:
    if "- Lead scoring" in body:
        return None
    items = (
        "- Lead scoring that learns from your closed deals\n- Automated multi-step sequences\n"
        "- Meeting scheduling with round-robin routing\n- Pipeline analytics and forecasts\n"
        "- Native Salesforce and HubSpot sync\n- Call recording and transcripts"
    )
    paras = paragraphs(body)
    paras.insert(min(2, len(paras) - 1), "Here is what you get:\n" + items)
    return subject, join(paras)


@dataclass(frozen=True)
class Rewrite:
    code: str
    what: str
    why: str
    apply: Callable[[str, str], Copy | None]


REWRITES = (
    Rewrite(
        "C01", "Make the subject a short question", "questions invite an answer", question_subject
    ),
    Rewrite(
        "C02",
        "Cut the subject to a few words",
        "long subjects are cut off and skimmed past",
        short_subject,
    ),
    Rewrite("C03", "Stop shouting in the subject", "capitals read as spam", calm_subject),
    Rewrite(
        "C04",
        "Greet the prospect by first name",
        "'Hi there' reads like a mass mailing",
        greet_by_name,
    ),
    Rewrite(
        "C05",
        "Open with a line about their company",
        "relevance first earns the next sentence",
        company_opener,
    ),
    Rewrite(
        "C06",
        "End with one concrete ask: a 15-minute call on a named day",
        "a clear, easy yes gets more replies than 'let me know'",
        clear_ask,
    ),
    Rewrite("C07", "Delete the longest paragraph", "short emails get read to the end", shorten),
    Rewrite(
        "C08",
        "Remove the spammy sentences (free, guaranteed, limited time)",
        "they trip filters and trust",
        drop_spam,
    ),
    Rewrite("C09", "Keep a single link", "links look like marketing and hurt delivery", one_link),
    Rewrite("C10", "Drop the exclamation marks", "calm reads as credible", no_exclamations),
    Rewrite(
        "C11", "Add a P.S. with a concrete result", "the P.S. is the most-read line", postscript
    ),
    Rewrite("C12", "Talk about them, not us", "'you' beats 'we' in cold email", you_focus),
    Rewrite("C13", "Add urgency to the subject", "a deadline might prompt action", urgent_subject),
    Rewrite(
        "C14", "Add a link to a 2-minute demo video", "a demo might show more than words", demo_link
    ),
    Rewrite("C15", "Add a bullet list of features", "specifics might convince", feature_list),
    Rewrite("C16", "Use a formal greeting", "formality might read as respectful", formal_greeting),
)


def tried_codes(prompt: str) -> set[str]:
    return set(re.findall(r"\[(C\d\d)\]", prompt))


def seed_of(prompt: str) -> int:
    if os.environ.get("COPYWRITER_SEED"):
        return int(os.environ["COPYWRITER_SEED"])
    m = re.search(r"^#\s*Experiment\s+(\d+)", prompt, re.MULTILINE)
    return int(m.group(1)) if m else 0


def choose(subject: str, body: str, prompt: str) -> tuple[Rewrite, Copy] | None:
    """One applicable rewrite not tried before, picked by the seed."""
    tried = tried_codes(prompt)
    options = []
    for rewrite in REWRITES:
        if rewrite.code in tried:
            continue
        new = rewrite.apply(subject, body)
        if new is not None and new != (subject, body):
            options.append((rewrite, new))
    if not options:
        return None
    return random.Random(seed_of(prompt)).choice(options)


def read_prompt(argv: list[str]) -> str:
    if len(argv) > 1:
        return Path(argv[1]).read_text()
    return "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()


def main(argv: list[str]) -> int:
    prompt = read_prompt(argv)
    subject_file, body_file = Path("subject.txt"), Path("body.txt")
    subject, body = subject_file.read_text(), body_file.read_text()
    picked = choose(subject, body, prompt)
    if picked is None:
        print("every rewrite I know is in the copy or was tried already", file=sys.stderr)
        return 1
    rewrite, (new_subject, new_body) = picked
    if new_subject != subject:
        subject_file.write_text(new_subject)
    if new_body != body:
        body_file.write_text(new_body)
    print(f"HYPOTHESIS: [{rewrite.code}] {rewrite.what}, because {rewrite.why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
