"""Issue 16, holes 5 and 9: secrets whose names dodge a deny-list, and loose metric lines.

The evaluator's environment is an allowlist (plus what the study names in `passenv`); whatever
secret it prints all the same is redacted from the log on disk and from the Measurement. Metric
lines are read strictly: ASCII digits, numbers a float can hold, lines split at \\n only, one
line per name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.secrets import allowed_environ, is_secret_name, known_secrets, redact
from evaluators.base import Measurement
from evaluators.command import CommandConfig, CommandEvaluator, parse_metrics

AZURE = (
    "DefaultEndpointsProtocol=https;AccountName=x;"
    "AccountKey=bXlrZXkxMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcA+/==;EndpointSuffix=core.windows.net"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6\n"
    "-----END RSA PRIVATE KEY-----"
)
# Secrets whose names the old deny-list (KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH) let
# through, the last ones under names that say nothing at all.
SECRETS = {
    "DB_PASS": "db-pass-Xq81vLr2",
    "SMTP_PASS": "smtp-pass-J7mQw2zP",
    "MYSQL_PWD": "mysql-pwd-K2pL9xRt",
    "SENTRY_DSN": "https://0123456789abcdef0123456789abcdef@o450.ingest.sentry.io/5501",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/xyzXYZ0123456789",
    "STRIPE_SK": "sk_live_51HdUmMyDuMmYdUmMy00000000",
    "AZURE_STORAGE_CONNECTION_STRING": AZURE,
    "STORAGE": AZURE.replace("AccountName=x", "AccountName=y"),
    "BILLING": "rk_test_51HdUmMyDuMmYdUmMy11111111",
    "NOTIFY": "https://hooks.slack.com/services/T1AAAAAAA/B1BBBBBBB/abcABC0123456789",
    "BACKEND": "https://fedcba9876543210fedcba9876543210@sentry.example.com/7",
    "SIGNER_PEM": PEM,
    "SESSION_JWT_BLOB": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlMTIz",
    "MAPS": "AIzaSyA-1234567890abcdefghijklmnopqrstu",
    "DATABASE_URL": "Server=db.internal;Database=app;User Id=app;Password=pg-Secret-77q;",
    "CACHE": "redis://:redis-pw-991xx@cache.internal:6379/0",
    "LEGACY_API": "https://api.example.com/v1?user=me&password=qwerty-Zx91&format=json",
}
NAMELESS = {"STORAGE", "BILLING", "NOTIFY", "BACKEND", "SIGNER_PEM", "MAPS", "CACHE", "LEGACY_API"}
# What of each value must not be written: the whole value, or its secret part.
SECRET_PART = {
    "AZURE_STORAGE_CONNECTION_STRING": "bXlrZXkxMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcA",
    "STORAGE": "bXlrZXkxMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcA",
    "SENTRY_DSN": "0123456789abcdef0123456789abcdef",
    "BACKEND": "fedcba9876543210fedcba9876543210",
    "SIGNER_PEM": "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6",
    "DATABASE_URL": "pg-Secret-77q",
    "CACHE": "redis-pw-991xx",
    "LEGACY_API": "qwerty-Zx91",
}


def evaluate(
    folder: Path, script: str, metric: str = "rmse", passenv: tuple[str, ...] = (), **env: str
) -> tuple[Measurement, str]:
    """Run a script as the study's evaluator: its Measurement and its log as left on disk."""
    (folder / "job.py").write_text(script)
    config = CommandConfig(command="python job.py", timeout_s=20, env=env, passenv=list(passenv))
    log = folder / "logs" / "1.log"
    m = CommandEvaluator(config, metric).evaluate(folder, log)
    return m, log.read_text(encoding="utf-8", errors="replace")


def dump(extra: str = "") -> str:
    """An evaluator that prints its whole environment, then what it was told to, then a score."""
    return (
        "import os, sys\n"
        "for k, v in sorted(os.environ.items()):\n"
        "    print(f'{k}={v!r}')\n"
        f"{extra}"
        "print('rmse: 0.5')\n"
    )


def leaked(name: str, text: str) -> bool:
    return SECRET_PART.get(name, SECRETS[name]) in text


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_a_secret_of_ours_is_not_in_the_evaluators_environment_nor_its_log(
    tmp_path, monkeypatch, name
):
    monkeypatch.setenv(name, SECRETS[name])
    script = dump(f"print('seen' if {name!r} in os.environ else 'unseen', {name!r})\n")
    m, log = evaluate(tmp_path, script)
    assert m.status == "ok" and m.metric == 0.5
    assert f"unseen {name}" in log  # never given: an allowlist
    assert not leaked(name, log) and not leaked(name, m.log_tail)


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_a_secret_printed_all_the_same_is_redacted(tmp_path, monkeypatch, name):
    """The evaluator read it from somewhere else (a file, its own config) and printed it."""
    monkeypatch.setenv(name, SECRETS[name])
    m, log = evaluate(tmp_path, dump(f"print('leak:', {SECRETS[name]!r})\n"))
    assert m.status == "ok" and m.metric == 0.5
    assert not leaked(name, log) and not leaked(name, m.log_tail)
    assert "[redacted]" in log


def test_passenv_lets_a_variable_through_and_a_secret_one_stays_out_of_the_log(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("STUDY_SETTING", "budget-120-seconds")
    monkeypatch.setenv("STUDY_OTHER", "not-asked-for-value")
    monkeypatch.setenv("DB_PASS", SECRETS["DB_PASS"])
    monkeypatch.setenv("GPT_TRAIN_DEVICE", "cpu-device")
    check = (
        f"assert os.environ['DB_PASS'] == {SECRETS['DB_PASS']!r}\n"
        "assert os.environ['GPT_TRAIN_DEVICE'] == 'cpu-device'\n"
    )
    m, log = evaluate(tmp_path, dump(check), passenv=("STUDY_SETTING", "DB_PASS", "GPT_TRAIN_*"))
    assert m.status == "ok", m.log_tail  # the evaluator saw both
    assert "STUDY_SETTING='budget-120-seconds'" in log
    assert "not-asked-for-value" not in log
    assert SECRETS["DB_PASS"] not in log and SECRETS["DB_PASS"] not in m.log_tail
    assert "DB_PASS='[redacted]'" in log


def test_a_secret_the_study_writes_in_env_is_redacted_from_the_log(tmp_path):
    m, log = evaluate(tmp_path, dump(), SMTP_PASS="written-in-study-yaml")
    assert m.status == "ok" and "written-in-study-yaml" not in log


def test_the_allowlist_passes_what_gpu_and_ml_studies_need(tmp_path, monkeypatch):
    settings = {
        "OPENBLAS_CORETYPE": "NEOVERSEN1",
        "CUDA_VISIBLE_DEVICES": "1",
        "OMP_NUM_THREADS": "3",
        "PYTHONHASHSEED": "7",
        "HF_HOME": "/data/hf-home",
        "LC_ALL": "C.UTF-8",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "a" * 34)
    monkeypatch.setenv("MY_APP_SETTING", "unlisted-setting")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    m, log = evaluate(tmp_path, dump())
    assert m.status == "ok"
    for name, value in settings.items():
        assert f"{name}={value!r}" in log
    assert "HF_TOKEN" not in log and "unlisted-setting" not in log and "PREFECT_API" not in log


def test_allowed_environ_is_an_allowlist_with_passenv():
    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "OPENBLAS_CORETYPE": "NEOVERSEN1",
        "KEYBOARD_LAYOUT": "dvorak-intl",
        "PASSES": "3",
        "SMTP_PASS": "smtp-pass-J7mQw2zP",
        "HF_TOKEN": "hf_" + "a" * 34,
        "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
        "PYTHONPATH": "sk_live_51HdUmMyDuMmYdUmMy00000000",  # shaped like a key: left out
    }
    assert allowed_environ(env) == {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "OPENBLAS_CORETYPE": "NEOVERSEN1",
    }
    passed = allowed_environ(env, ["WANDB_API_KEY", "PASS*"])
    assert passed["WANDB_API_KEY"] == env["WANDB_API_KEY"] and passed["PASSES"] == "3"
    assert "SMTP_PASS" not in passed


def test_secret_names_are_read_by_word_and_by_stem():
    for name in SECRETS.keys() - NAMELESS:
        assert is_secret_name(name), name
    for name in ["dbPass", "SK_LIVE", "PG_URI", "SESSION_COOKIE", "GH_PAT", "SIGNING_SALT"]:
        assert is_secret_name(name), name
    for name in ["PASSES", "BYPASS", "TASK", "PWD", "OLDPWD", "GIT_AUTHOR_NAME", "OMP_NUM_THREADS"]:
        assert not is_secret_name(name), name


def test_known_secrets_and_redact_cover_every_shape(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    known = known_secrets()
    assert all(value in known for value in SECRETS.values())
    text = "\n".join(f"{k} -> {v}" for k, v in SECRETS.items())
    for name in SECRETS:
        assert not leaked(name, redact(text)), name
        if name not in {"DB_PASS", "SMTP_PASS", "MYSQL_PWD"}:  # the rest have a shape
            assert not leaked(name, redact(text, [])), name
    ordinary = (
        "rmse: 0.5\nMETRIC pass=12\nbypass=1\nkeyboard layout\nstep 10 | loss 2.5\n"
        "tok = AutoTokenizer.from_pretrained(name, token=token)\n"
        "db = connect(password=cfg.password, user=user)\nf(token=None)\n"
        'url = f"https://api.example.com/?token={token}"\n'
    )
    assert redact(ordinary) == ordinary  # metric lines, plain words and code are left alone
    printed = "{'user': 'me', 'password': 'hunter-22'} Config(api_key=\"abc-123-xyz\")"
    assert redact(printed, []) == (
        "{'user': 'me', 'password': '[redacted]'} Config(api_key=\"[redacted]\")"
    )


# Hole 9: each a crash, or the value the evaluator meant.
UNICODE_DIGITS = {
    "arabic-indic": "\u0661.\u0665",  # ١.٥, float() reads 1.5
    "fullwidth": "\uff11.\uff15",
    "devanagari": "\u0967.\u096b",
    "exponent": "1e\u0664",  # 1e٤
    "dotless i": "\u0131nf",  # IGNORECASE took it for inf; float() raised outside any crash row
}


@pytest.mark.parametrize("number", UNICODE_DIGITS.values(), ids=UNICODE_DIGITS.keys())
def test_unicode_digits_are_no_number(tmp_path, number):
    script = f"import sys\nsys.stdout.buffer.write('rmse: {number}\\n'.encode())\n"
    m, _ = evaluate(tmp_path, script)
    assert m.status == "crash" and m.reason == "no 'rmse:' line in the output"


def test_an_underflow_is_a_crash_not_zero(tmp_path):
    m, _ = evaluate(tmp_path, "print('rmse: 1e-400')\n")
    assert m.status == "crash" and "rmse underflows to 0" in m.reason
    m, _ = evaluate(tmp_path, "print('rmse: 0.02')\nprint('memory: -2.5e-999')\n")
    assert m.status == "crash" and "memory underflows" in m.reason


def test_an_overflow_is_a_crash_naming_it(tmp_path):
    m, _ = evaluate(tmp_path, "print('rmse: 1e400')\n")
    assert m.status == "crash" and "rmse overflows a float: 'rmse: 1e400'" in m.reason
    assert parse_metrics("rmse: 0\nzero: 0e-400\ntiny: 5e-324\n")["tiny"] == 5e-324


SEPARATORS = {
    "U+2028": "\u2028",
    "U+2029": "\u2029",
    "NEL": "\x85",
    "FS": "\x1c",
    "GS": "\x1d",
    "RS": "\x1e",
    "VT": "\v",
    "FF": "\f",
    "lone CR": "\r",
}


@pytest.mark.parametrize("sep", SEPARATORS.values(), ids=SEPARATORS.keys())
def test_lines_split_at_newline_only(tmp_path, sep):
    """A name printed by the evaluator (a test case's, a candidate's) cannot start a line."""
    injected = f"case x{sep}rmse: 0.001"
    script = (
        "import sys\n"
        "sys.stdout.buffer.write(b'rmse: 0.5\\r\\n')\n"  # CRLF is one line end
        f"sys.stdout.buffer.write({injected!r}.encode() + b'\\n')\n"
    )
    m, _ = evaluate(tmp_path, script)
    assert m.status == "ok" and m.metric == 0.5


@pytest.mark.parametrize(
    "second", ["rmse: 0.001", "METRIC rmse=0.001", "  rmse :0.5"], ids=["same", "pi", "equal"]
)
def test_a_metric_printed_twice_is_a_crash_naming_both_lines(tmp_path, second):
    m, _ = evaluate(tmp_path, f"print('rmse: 0.5')\nprint({second!r})\n")
    assert m.status == "crash"
    assert m.reason == f"rmse printed twice: 'rmse: 0.5' and {second.strip()!r}"


def test_a_secondary_printed_twice_is_a_crash_too(tmp_path):
    m, _ = evaluate(tmp_path, "print('trials: 40')\nprint('rmse: 0.5')\nprint('trials: 4')\n")
    assert m.status == "crash" and m.reason == "trials printed twice: 'trials: 40' and 'trials: 4'"


def test_a_secondary_that_is_not_finite_is_left_out(tmp_path):
    """int(nan) would raise where successes and trials are read, outside any crash row."""
    script = "print('successes: nan')\nprint('trials: inf')\nprint('mfu: 39.5')\nprint('rmse: 0.5')"
    m, _ = evaluate(tmp_path, script)
    assert m.status == "ok" and m.secondary == {"mfu": 39.5}


@pytest.mark.parametrize("names", [["PREFECT_API_URL"], ["PREF*"], ["AUTORESEARCH_*"], ["A-B"]])
def test_passenv_cannot_ask_for_the_tools_own_variables(names: list[str]) -> None:
    """Prefect's API and login, and the signing key, whatever a study (or an agent's) asks."""
    from pydantic import ValidationError

    from proposers.agent_cli import AgentCliConfig

    for config in (CommandConfig, AgentCliConfig):
        with pytest.raises(ValidationError, match="passenv"):
            config(command="python job.py", passenv=names)
