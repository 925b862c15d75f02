"""What a secret looks like, decided once, and how it is masked.

One word list (:data:`SECRET_WORDS`) answers "is this variable name a secret?"; one scanner
(:func:`find_secrets`) answers "does this text hold a secret?": passwords in URLs, known token
shapes (JWTs, AWS, GitHub, Slack, Google, Stripe keys, private key blocks, `Authorization`
values, `password=...` pairs), optionally long random-looking strings, and the value of every
secret-named environment variable. Templates refuse what it finds (a compiled package must never
hold a secret); logs, errors, submit and the connectors mask it with :func:`redact`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

MASK = "***"

#: A variable whose name contains one of these (case-insensitive) holds a secret.
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "PASSPHRASE", "KEY", "CREDENTIAL",
                "PRIVATE", "COOKIE", "AUTHORIZATION", "SIGNATURE")
#: ... or has one of these as a whole `_`-separated part (`DB_PWD`, `SENTRY_DSN`, `HTTP_AUTH`).
SECRET_NAME_PARTS = ("PWD", "PASS", "PW", "DSN", "AUTH", "CREDS")
#: Names that match the rules above but are not secrets (the shell's working directories).
NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})
#: Shorter values are not masked: they would blank out ordinary words and numbers.
MIN_SECRET_LENGTH = 3
#: Values of secret-named variables that are switches, not secrets.
_NOT_SECRET_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null"})
#: Stand-ins that documentation and hints write where a secret goes (`USER:PASSWORD@HOST`).
_PLACEHOLDERS = frozenset({"password", "passwd", "pass", "pw", "secret", "token", "key", "xxx",
                           "xxxx", "***", "..."})
#: Strings at least this long are checked for looking random (see :func:`looks_random`).
RANDOM_MIN_LENGTH = 20


@dataclass(frozen=True)
class Finding:
    """A secret found in a text: what kind it is (words for a message) and the value to mask."""

    kind: str
    value: str


#: (kind, literals one of which a match must contain, pattern): the literals skip a pattern
#: cheaply on text that cannot match; every pattern is linear in the text (no nested repeats).
_SHAPES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    ("a password in a URL", ("://",), re.compile(
        r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s/?#@:]*:(?P<secret>[^\s/?#]+)@")),
    ("a private key", ("PRIVATE KEY",), re.compile(
        r"(?P<secret>-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----(?:.|\n)*?"
        r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|\Z))")),
    ("a JSON web token", ("eyJ",), re.compile(
        r"(?P<secret>\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)")),
    ("an AWS access key id", ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA",
                              "ANVA", "AROA", "APKA"), re.compile(
        r"(?P<secret>\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16})\b")),
    ("a GitHub token", ("gh", "github_pat_"), re.compile(
        r"(?P<secret>\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}))")),
    ("a Slack token", ("xox",), re.compile(r"(?P<secret>\bxox[abposr]-[A-Za-z0-9-]{10,})")),
    ("a Google API key", ("AIza",), re.compile(r"(?P<secret>\bAIza[0-9A-Za-z_-]{30,})")),
    ("an API secret key", ("sk_", "rk_", "sk-"), re.compile(
        r"(?P<secret>\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|\bsk-[A-Za-z0-9_-]{20,})")),
    ("an Authorization header value", ("Bearer", "Basic", "Token"), re.compile(
        r"\b(?:Bearer|Basic|Token)\s{1,8}(?P<secret>[A-Za-z0-9._~+/=-]{8,})")),
    ("a secret parameter", ("=",), re.compile(
        r"(?i)(?<![\w.-])[\w.-]{0,40}?(?:password|passwd|secret|token|signature|credential|api[_-]?key)"
        r"[\w.-]{0,40}=(?P<secret>[^&\s'\";,]{3,})")),
)
_CANDIDATE = re.compile(rf"[A-Za-z0-9+=_-]{{{RANDOM_MIN_LENGTH},}}")
_WORDLIKE = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{4,}")


def is_secret_name(name: str) -> bool:
    """True when a variable's name says it holds a secret (`DB_PASSWORD`, `KFP_TOKEN`)."""
    upper = name.upper()
    if upper in NOT_SECRET_NAMES:
        return False
    if any(word in upper for word in SECRET_WORDS):
        return True
    return any(part in SECRET_NAME_PARTS for part in re.split(r"[^A-Z0-9]+", upper))


def looks_random(text: str) -> bool:
    """True for a long string of mixed letters and digits with few word-like runs (a key)."""
    if len(text) < RANDOM_MIN_LENGTH:
        return False
    upper, lower = re.search("[A-Z]", text), re.search("[a-z]", text)
    digits = sum(c.isdigit() for c in text)
    if not (upper and lower and (digits or len(text) >= 32)) or digits * 2 >= len(text):
        return False
    worded = sum(len(m) for m in _WORDLIKE.findall(text))
    return worded * 2 < len(text)


class Scanner:
    """The one value scanner: credential shapes in a text, and the secrets of one environment
    (found once, when the scanner is made)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environment = environment_secrets(os.environ if environ is None else environ)

    def find(self, text: str, *, random_strings: bool = False) -> list[Finding]:
        """Every secret in `text`: its credential-shaped parts and the environment's secrets.

        `random_strings` also reports long random-looking strings: right where a false alarm
        costs a clear error (compiling), too eager where it would blank out ordinary log lines.
        """
        return _shapes(text, random_strings) + self.environment_values_in(text)

    def environment_values_in(self, text: str) -> list[Finding]:
        """The environment's secrets that `text` contains, as they are or URL-encoded."""
        return [f for f in self.environment if any(form in text for form in _forms(f.value))]

    def redact(self, text: str, extra: Iterable[str | None] = ()) -> str:
        """`text` with every secret masked, and the `extra` values (credentials a caller holds),
        each also in its URL-encoded forms."""
        values = {f.value for f in _shapes(text, False)} | {f.value for f in self.environment}
        values |= {str(v) for v in extra if v and len(str(v)) >= MIN_SECRET_LENGTH}
        forms = {form for value in values for form in _forms(value)}
        for form in sorted(forms, key=len, reverse=True):  # longest first: no half-masked secret
            text = text.replace(form, MASK)
        return text


def find_secrets(
    text: str, environ: Mapping[str, str] | None = None, *, random_strings: bool = False
) -> list[Finding]:
    """:meth:`Scanner.find` with the secrets of `environ` (the process environment by default)."""
    return Scanner(environ).find(text, random_strings=random_strings)


def redact(
    text: str, extra: Iterable[str | None] = (), environ: Mapping[str, str] | None = None
) -> str:
    """:meth:`Scanner.redact` with the secrets of `environ` (the process environment by default)."""
    return Scanner(environ).redact(text, extra)


def environment_secrets(environ: Mapping[str, str]) -> list[Finding]:
    """The values of secret-named variables, and the credentials inside any other value
    (the password in `DATABASE_URL=postgresql://user:pw@host/db`)."""
    found = []
    for name, value in environ.items():
        if not value or value.strip().lower() in _NOT_SECRET_VALUES:
            continue
        if is_secret_name(name):  # a real value, even when it reads like a stand-in
            if len(value) >= MIN_SECRET_LENGTH:
                found.append(Finding(f"the value of `{name}`", value))
        else:
            found += _shapes(value, False)
    return found


def _shapes(text: str, random_strings: bool) -> list[Finding]:
    found = [Finding(kind, m.group("secret"))
             for kind, literals, pattern in _SHAPES if any(lit in text for lit in literals)
             for m in pattern.finditer(text)]
    if random_strings:
        found += [Finding("a long random-looking string", m.group(0))
                  for m in _CANDIDATE.finditer(text) if looks_random(m.group(0))]
    return [f for f in found if _maskable(f.value)]


def _maskable(value: str) -> bool:
    return (len(value) >= MIN_SECRET_LENGTH and value.lower() not in _PLACEHOLDERS
            and not re.fullmatch(r"<[^<>]*>|\$\{?[A-Za-z_]\w*\}?", value))


def _forms(value: str) -> set[str]:
    return {form for form in (value, quote(value, safe=""), quote_plus(value))
            if len(form) >= MIN_SECRET_LENGTH}
