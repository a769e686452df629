"""Keep secrets out of everything we write: ledgers, learnings, logs, prompts, reports.

Two defences. What a child process sees is an allowlist (`allowed_environ`): a secret whose
name nobody thought of never reaches it. What we write is redacted (`redact`): the values of
every secret-looking variable of our environment, and anything shaped like a credential.
Every pattern starts with a literal, so that a 20 MB log is scanned at memchr speed.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8  # a shorter value replaced everywhere would garble a log, and guard little

# Name rule. Substrings: long enough to mean a secret wherever they appear (KEYBOARD's value is
# scrubbed too: harmless, and better than missing a PRIVATEKEY). AUTHOR(S) alone is no AUTH.
SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PASSPHRASE|PASSCODE|CRED|AUTH(?!ORS?(?![A-Z]))|PRIVATE|SIGNATURE"
    r"|SIGNING|SESSION|COOKIE|WEBHOOK|DSN|SALT|HMAC|BEARER|CONN_?STR|CONNECTION_?STR",
    re.IGNORECASE,
)
# Whole words of a name (split at _, digits and camelCase): too short to search as substrings
# (PASS is in PASSES and BYPASS, SK in TASK, PW in PWM).
SECRET_WORDS = frozenset(
    {"PASS", "PWD", "PW", "PSW", "SK", "RK", "PAT", "JWT", "OTP", "TOTP", "SIG", "CSRF", "XSRF"}
)
# A URL of a data store usually carries its password: DATABASE_URL, REDIS_URI, ...
STORE_WORDS = frozenset(
    {"DATABASE", "DB", "REDIS", "MONGO", "MONGODB", "POSTGRES", "POSTGRESQL", "PG", "MYSQL"}
    | {"AMQP", "RABBITMQ", "BROKER", "SQLALCHEMY", "ELASTICSEARCH", "CLICKHOUSE"}
)
NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})  # the shell's working directories
_WORD_SPLIT = re.compile(r"[^A-Za-z]+|(?<=[a-z])(?=[A-Z])")
_VALUE_END = r"(?=[\s;&#'\"<>]|$)"  # a query's, a connection string's, a quote's: not code's , or )
_PLAIN_NUMBER = rf"[-+]?[0-9]+(?:\.[0-9]+)?{_VALUE_END}"

# Value patterns, each (pattern, replacement). Each starts with a literal (or puts its word
# boundary in a lookbehind after one) so that the regex engine searches for it quickly.
_W = "A-Za-z0-9_"
_VALUE_KEYS = [  # lookbehinds: the name before `=` of a secret in a query or connection string
    *(
        f"(?<={key}=)"
        for key in ("password", "passwd", "passphrase", "secret", "token", "apikey", "api_key")
        + ("api-key", "accountkey", "sharedaccesskey", "sharedaccesssignature", "credentials")
        + ("credential",)
    ),
    # short ones only as a word of their own: db_pass=, but not bypass=
    *(f"(?<={key}=)(?<![A-Za-z0-9]{key}=)" for key in ("pwd", "pass", "sig", "auth")),
]
KEY_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]{6,}"), REDACTED),  # Anthropic
    (re.compile(rf"sk-(?<![{_W}]sk-)[A-Za-z0-9_\-]{{20,}}"), REDACTED),  # OpenAI
    (re.compile(r"SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"), REDACTED),  # SendGrid
    (re.compile(r"A[KS]IA[0-9A-Z]{16}(?![0-9A-Z])"), REDACTED),  # AWS access key id
    (re.compile(r"gh[pousr]_[A-Za-z0-9_]{20,}"), REDACTED),  # GitHub
    (re.compile(r"github_pat_[A-Za-z0-9_]{20,}"), REDACTED),
    (re.compile(r"glpat-[A-Za-z0-9_\-]{20,}"), REDACTED),  # GitLab
    (re.compile(r"xox[abposr]-[A-Za-z0-9\-]{10,}"), REDACTED),  # Slack tokens
    (re.compile(r"xapp-[0-9]-[A-Za-z0-9\-]{10,}"), REDACTED),
    (re.compile(r"hooks\.slack\.com/[A-Za-z0-9_/\-]{8,}"), "hooks.slack.com/" + REDACTED),
    (
        re.compile(r"discord(?:app)?\.com/api/webhooks/[0-9]+/[A-Za-z0-9_\-]+"),
        "discord.com/api/webhooks/" + REDACTED,
    ),
    # Stripe secret and restricted keys, live and test; webhook signing secrets
    (re.compile(r"k_(?:live|test)_(?<=[rs]k_live_|[rs]k_test_)[A-Za-z0-9]{10,}"), "k_" + REDACTED),
    (re.compile(r"whsec_[A-Za-z0-9]{16,}"), REDACTED),
    (re.compile(r"AIza[0-9A-Za-z_\-]{30,}"), REDACTED),  # Google API key
    (re.compile(r"ya29\.[0-9A-Za-z_\-]{20,}"), REDACTED),  # Google OAuth access token
    (re.compile(r"GOCSPX-[0-9A-Za-z_\-]{20,}"), REDACTED),  # Google OAuth client secret
    (re.compile(r"hf_[A-Za-z0-9]{30,}"), REDACTED),  # Hugging Face
    (re.compile(r"npm_[A-Za-z0-9]{36}"), REDACTED),
    (re.compile(r"pypi-[A-Za-z0-9_\-]{50,}"), REDACTED),
    (re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"), REDACTED),  # JWT
    (  # a PEM private key, to its END line (or the end of the text, when cut short)
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?"
            r"(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # the userinfo of a URL: user:password@, a DSN's key@ (Sentry), a token@
    (re.compile(r"://[^\s/?#@'\"<>]+@"), f"://{REDACTED}@"),
    (re.compile(r"Bearer [A-Za-z0-9_\-.~+/]{8,}=*"), f"Bearer {REDACTED}"),
    (
        re.compile(
            r"uthorization(?<=[Aa]uthorization)(['\"]?[ \t]*[:=][ \t]*['\"]?)"
            r"(?:Basic|Token|Digest|Bearer) [^\s'\"]+"
        ),
        rf"uthorization\1{REDACTED}",
    ),
    # key=value in a query string or a connection string: password=, AccountKey=, sig=, ...
    # Left: a plain number (`METRIC pass=12` is a metric line) and code (`f(token=token)`,
    # `password=cfg.password,`), whose value ends at , or ) or holds brackets.
    (
        re.compile(
            f"=(?:{'|'.join(_VALUE_KEYS)})"
            rf"(['\"]?)(?!{_PLAIN_NUMBER})[^\s;&#'\"<>,()\[\]{{}}]+{_VALUE_END}",
            re.IGNORECASE,
        ),
        rf"=\1{REDACTED}",
    ),
    *(  # "password": "..." in JSON, 'password': '...' in a Python dict's repr
        (
            re.compile(
                rf"{q}(password|passwd|secret|client_secret|access_token|refresh_token|api_?key"
                rf"|private_key|accountkey){q}[ \t]*:[ \t]*{q}[^{q}]*{q}",
                re.IGNORECASE,
            ),
            rf"{q}\1{q}: {q}{REDACTED}{q}",
        )
        for q in "\"'"
    ),
]


def is_secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret (DB_PASS, SENTRY_DSN, STRIPE_SK, ...)."""
    if name in NOT_SECRET_NAMES:
        return False
    if SECRET_NAME.search(name):
        return True
    words = {w.upper() for w in _WORD_SPLIT.split(name) if w}
    return bool(words & SECRET_WORDS) or bool(words & {"URL", "URI"} and words & STORE_WORDS)


def looks_secret(value: str) -> bool:
    """Whether a value holds something shaped like a credential, whatever its name."""
    return any(pattern.search(value) for pattern, _ in KEY_PATTERNS)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values to scrub of one environment: those of secret-named variables (but a file's
    path, which only says where a secret is), and every value shaped like a credential."""
    found = []
    for name, value in env.items():
        if len(value) < MIN_SECRET_CHARS:
            continue
        by_name = is_secret_name(name) and not _is_path(value)
        if by_name or looks_secret(value):
            found.append(value)
    return found


def _is_path(value: str) -> bool:
    return value.startswith("/") and not any(c.isspace() for c in value)


@functools.lru_cache(maxsize=16)
def _secrets_of(items: frozenset[tuple[str, str]]) -> tuple[str, ...]:
    """Cached: redact() asks for the process environment's secrets on every call."""
    return tuple(secret_values(dict(items)))


def known_secrets(*extra: str | None, env: Mapping[str, str] | None = None) -> list[str]:
    """Secret values to scrub, longest first: the given ones, and those of `env` (the process
    environment when None) by name and by shape."""
    source = os.environ if env is None else env
    values = [v for v in extra if v] + list(_secrets_of(frozenset(source.items())))
    return sorted({v for v in values if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """Text with every known secret value and anything that looks like a credential removed."""
    for value in known_secrets() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in KEY_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def holds_secret(text: str, secrets: list[str] | None = None) -> bool:
    return redact(text, secrets) != text


# The evaluator's environment, by allowlist: what a program needs to run and to find its
# machine (locale, paths, the GPUs it is given, thread counts, ML caches), nothing else.
ALLOWED_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "NO_COLOR"}
    | {"TMPDIR", "TEMP", "TMP", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"}
    | {"VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "LD_LIBRARY_PATH", "CC", "CXX"}
    | {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"}
    | {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}
    | {"GPU_DEVICE_ORDINAL", "ZE_AFFINITY_MASK", "ONEAPI_DEVICE_SELECTOR", "MPLBACKEND"}
    | {"GOTO_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"}
    | {"TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "TF_FORCE_GPU_ALLOW_GROWTH"}
    | {"TOKENIZERS_PARALLELISM"}  # a setting, though its name holds TOKEN
)
# Families of settings; a member whose name looks secret (HF_TOKEN) is still left out.
ALLOWED_PREFIXES = (
    "LC_",
    "PYTHON",  # PYTHONPATH, PYTHONHASHSEED, PYTHONHOME, ...
    "PYENV_",
    "CUDA_",  # CUDA_VISIBLE_DEVICES, CUDA_HOME, CUDA_LAUNCH_BLOCKING, ...
    "CUDNN_",
    "CUBLAS_",  # CUBLAS_WORKSPACE_CONFIG: deterministic matmuls
    "NCCL_",
    "NVIDIA_",
    "NVPL_",  # NVIDIA's BLAS on Grace
    "HIP_",
    "ROCR_",
    "ROCM_",
    "HSA_",  # HSA_OVERRIDE_GFX_VERSION
    "MIOPEN_",
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",  # OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS
    "NUMEXPR_",
    "TORCH",  # TORCH_HOME, TORCHINDUCTOR_CACHE_DIR, TORCH_CUDA_ARCH_LIST, ...
    "PYTORCH_",  # PYTORCH_CUDA_ALLOC_CONF, PYTORCH_ENABLE_MPS_FALLBACK
    "TRITON_",
    "XLA_",
    "JAX_",
    "HF_",  # HF_HOME, HF_HUB_OFFLINE (HF_TOKEN is left out by its name)
    "TRANSFORMERS_",
)


def _listed(name: str, patterns: Iterable[str]) -> bool:
    """Whether a name is one of `patterns`: exact names, or `PREFIX*`."""
    return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)


def is_allowed_name(name: str) -> bool:
    """Whether a variable of this name passes to a child by default (its value not judged)."""
    if name in ALLOWED_NAMES:
        return True
    return name.startswith(ALLOWED_PREFIXES) and not is_secret_name(name)


# The tool's own variables: Prefect's (its API, and its login), ours (the signing key).
TOOL_PREFIXES = ("PREFECT_", "AUTORESEARCH_")


def check_passenv(names: list[str]) -> list[str]:
    """`passenv` names as a study may write them: NAME or PREFIX*, and none that would pass
    the tool's own variables (with the network, Prefect's API; and the signing key)."""
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", name):
            raise ValueError(f"passenv: {name!r} is not a variable name or NAME_PREFIX*")
        stem = name.removesuffix("*")
        for prefix in TOOL_PREFIXES:
            if stem.startswith(prefix) or (name.endswith("*") and prefix.startswith(stem)):
                raise ValueError(f"passenv: {name!r} would pass the tool's own {prefix}*")
    return names


def allowed_environ(env: Mapping[str, str], passenv: Iterable[str] = ()) -> dict[str, str]:
    """The environment a child process gets: the allowlisted variables of `env` whose value
    holds no secret, and every variable named in `passenv` (`NAME` or `PREFIX*`) as it is.

    A variable the study asks for by name passes even when it looks secret: the person chose
    it. Its value is still scrubbed from what we write, since `known_secrets` reads the same
    environment.
    """
    asked = list(passenv)
    secrets = known_secrets(env=env)
    return {
        name: value
        for name, value in env.items()
        if _listed(name, asked) or (is_allowed_name(name) and not holds_secret(value, secrets))
    }


def safe_environ(env: Mapping[str, str]) -> dict[str, str]:
    """The environment without secrets, by denial: no secret-named variable, and no variable
    whose value holds a known secret or a credential. Prefer `allowed_environ`: a secret whose
    name and shape nobody foresaw passes here."""
    secrets = known_secrets()
    return {k: v for k, v in env.items() if not is_secret_name(k) and not holds_secret(v, secrets)}
