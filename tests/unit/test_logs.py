"""One redacting filter for every logger of the process (billing.logs.configure): what it
hides, wherever the secret comes from (message, %-args, extra fields, tracebacks), and the
shape of the JSON lines (valid JSON, a stable ``action``)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from billing import logs
from billing.logs import REDACTED, Redactor, configure, log, redact

SECRET = "imp-secret-9f8e7d6c5b4a"
FLOWER_PASSWORD = "flower-pass-271828"
TOKEN = "4c2a1c0e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a49"
CARD = "4111111111111111"
LOGGERS = (
    "",
    "billing.pipeline",
    "celery.app.trace",
    "celery.worker.strategy",
    "celery.task",
    "httpx",
    "uvicorn.error",
    "some.third.party",
)


@dataclass(frozen=True)
class Leak:
    """A text that carries something secret, and what must not survive redaction."""

    name: str
    text: str
    hidden: tuple[str, ...]


LEAKS = [
    Leak("bearer header", f"Authorization: Bearer {TOKEN}", (TOKEN,)),
    Leak("bearer in a headers dict", f"{{'Authorization': 'Bearer {TOKEN}'}}", (TOKEN,)),
    Leak("bearer lower case", f"authorization=bearer {TOKEN}", (TOKEN,)),
    Leak(
        "basic auth header", "Authorization: Basic b3BzOmZsb3dlci1wYXNz", ("b3BzOmZsb3dlci1wYXNz",)
    ),
    Leak("access_token query", f"GET /payments?access_token={TOKEN}&page=2", (TOKEN,)),
    Leak("access_token json", f'{{"access_token": "{TOKEN}", "now": 1}}', (TOKEN,)),
    Leak("access_token repr", f"{{'access_token': '{TOKEN}'}}", (TOKEN,)),
    Leak("getToken body", f'{{"imp_key": "k", "imp_secret": "{SECRET}"}}', (SECRET,)),
    Leak("imp_secret as a known secret", f"credentials {SECRET} rejected", (SECRET,)),
    Leak("imp_secret url-encoded", "imp_secret%3D" + SECRET, (SECRET,)),
    Leak("flower password", f"basic auth ops:{FLOWER_PASSWORD}", (FLOWER_PASSWORD,)),
    Leak("card plain", f"card {CARD} declined", (CARD, "411111")),
    Leak("card dashed", "card 4111-1111-1111-1111 declined", ("4111-1111-1111-1111", "1111-1111")),
    Leak("card spaced", "card 4111 1111 1111 1111 declined", ("4111 1111", "1111 1111")),
    Leak("card amex 15", "card 3782-822463-10005 ok", ("3782-822463-10005", "822463")),
    Leak("card_number json", '{"card_number": "5105-1051-0510-5100"}', ("5105", "5100")),
    Leak("pwd_2digit form", "card_number=x&pwd_2digit=42&birth=900101", ("=42", "900101")),
    Leak("pwd_2digit json", '{"pwd_2digit": "42", "birth": "900101"}', ('"42"', "900101")),
    Leak("birth repr", "{'birth': 900101}", ("900101",)),
    Leak("expiry", '{"expiry": "2028-12"}', ("2028-12",)),
]


def test_redact_keeps_what_is_harmless() -> None:
    text = (
        "charge sub-abc123def456-1-1 amount 9900 imp_uid imps_123456789012 at "
        "2027-01-30T15:30:00+00:00, succeeded in 0.18396951100021397s, phone 010-1234-5678, "
        "task 1b608de3-f8e5-4d11-b3be-aea70583c707"
    )
    assert redact(text) == text
    assert redact(f"card {CARD}, next") == f"card {REDACTED}, next"  # the separator stays


def test_digits_that_cannot_be_a_card_stay() -> None:
    """Only a Luhn-valid run of 13-19 digits can be a card number: task ids, timestamps and
    error text keep theirs."""
    text = (
        "task 1764729600000 failed: order 1234567890123456 refused (ref "
        "9876543210987654321, 2027-0130-1530-00123)"
    )
    assert redact(text) == text
    record = logging.LogRecord("t", logging.INFO, "", 0, "x", None, None)
    record.fields = {"ref": 1234567890123456, "card": 5105105105105100}
    Redactor().filter(record)
    assert record.fields == {"ref": 1234567890123456, "card": REDACTED}


@pytest.mark.parametrize("leak", LEAKS, ids=lambda leak: leak.name)
def test_redact_text(leak: Leak) -> None:
    cleaned = redact(leak.text, (SECRET, FLOWER_PASSWORD))
    assert REDACTED in cleaned
    for hidden in leak.hidden:
        assert hidden not in cleaned, cleaned


class Captured:
    """What configure() writes to stderr, as JSON documents."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def text(self) -> str:
        return self.stream.getvalue()

    def documents(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """configure() on a fresh stderr; the logging state is put back afterwards."""
    root = logging.getLogger()
    handlers, level, factory = root.handlers[:], root.level, logging.getLogRecordFactory()
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure("DEBUG", json_lines=True, secrets=(SECRET, f"ops:{FLOWER_PASSWORD}", FLOWER_PASSWORD))
    yield Captured(stream)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.setLogRecordFactory(factory)
    for name in LOGGERS:
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def leaked(text: str) -> list[str]:
    return [h for leak in LEAKS for h in leak.hidden if h in text]


@pytest.mark.parametrize("name", LOGGERS)
def test_every_logger_message(captured: Captured, name: str) -> None:
    logger = logging.getLogger(name)
    for leak in LEAKS:
        logger.warning(leak.text)
    assert leaked(captured.text()) == []
    assert len(captured.documents()) == len(LEAKS)


@pytest.mark.parametrize("name", LOGGERS)
def test_every_logger_percent_args(captured: Captured, name: str) -> None:
    logger = logging.getLogger(name)
    for leak in LEAKS:  # warning: some libraries (httpx) are quieted to WARNING by configure()
        logger.warning("seen: %s (%d)", leak.text, 1)
    logger.warning("mapping %(body)s", {"body": f"access_token={TOKEN}"})
    assert leaked(captured.text()) == []
    assert "seen: " in captured.text() and "(1)" in captured.text()


def raise_with(text: str) -> None:
    raise RuntimeError(f"PortOne said no: {text}")


@pytest.mark.parametrize("name", LOGGERS)
def test_every_logger_traceback(captured: Captured, name: str) -> None:
    logger = logging.getLogger(name)
    for leak in LEAKS:
        try:
            raise_with(leak.text)
        except RuntimeError:
            logger.exception("charge failed")
    text = captured.text()
    assert leaked(text) == []
    documents = captured.documents()
    assert all("Traceback" in str(d["exception"]) for d in documents)
    assert all("raise_with" in str(d["exception"]) for d in documents)


def test_nested_exception_causes_and_stack_info(captured: Captured) -> None:
    logger = logging.getLogger("billing.pipeline")
    try:
        try:
            raise_with(f"Bearer {TOKEN}")
        except RuntimeError as inner:
            raise ValueError(f"card {CARD}") from inner
    except ValueError:
        logger.error("outer", exc_info=True, stack_info=True)
    text = captured.text()
    assert TOKEN not in text and CARD not in text
    assert "direct cause" in text


def test_extra_fields_and_structured_values(captured: Captured) -> None:
    logger = logging.getLogger("billing.portone")
    log(
        logger,
        "token_fetched",
        access_token=TOKEN,
        imp_secret=SECRET,
        card_number=CARD,
        card=int(CARD),
        body={"pwd_2digit": "42", "birth": "900101", "list": [f"Bearer {TOKEN}"]},
        header=f"Bearer {TOKEN}",
        amount=9900,
    )
    logger.info(
        "raw extra",
        extra={
            "fields": {"auth": f"Bearer {TOKEN}"},
            "request": f"pwd_2digit=42&birth=900101&access_token={TOKEN}",
        },
    )
    text = captured.text()
    assert leaked(text) == [] and TOKEN not in text
    first, second = captured.documents()
    assert first["action"] == "token_fetched" and first["amount"] == 9900
    assert first["access_token"] == REDACTED and first["card"] == REDACTED
    assert second["auth"] == f"Bearer {REDACTED}"


def test_a_handler_that_does_not_propagate_to_ours(captured: Captured) -> None:
    """A library's own handler (propagate off), made before or after configure()."""
    own = io.StringIO()
    before = logging.getLogger("some.third.party")
    before.addHandler(logging.StreamHandler(own))
    before.propagate = False
    configure("DEBUG", json_lines=True, secrets=(SECRET,))  # again: covers existing handlers
    later = logging.getLogger("celery.task")
    later.addHandler(logging.StreamHandler(own))
    later.propagate = False
    for logger in (before, later):
        logger.warning("token %s card %s", f"Bearer {TOKEN}", CARD)
        logger.warning("secret %s", SECRET)
        try:
            raise_with(f"access_token={TOKEN}")
        except RuntimeError:
            logger.exception("failed")
    assert TOKEN not in own.getvalue() and CARD not in own.getvalue()
    assert SECRET not in own.getvalue()
    assert own.getvalue().count(REDACTED) >= 6


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_extra_attributes_seen_by_any_handler(captured: Captured) -> None:
    records = Records()
    logger = logging.getLogger("some.third.party")
    logger.addHandler(records)
    logger.propagate = False
    configure("DEBUG", json_lines=True, secrets=(SECRET,))
    logger.info(
        "request",
        extra={
            "body": f"pwd_2digit=42&birth=900101&access_token={TOKEN}",
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "n": 1,
        },
    )
    [record] = records.records
    extra = vars(record)
    assert TOKEN not in str(extra["body"]) and "900101" not in str(extra["body"])
    assert extra["headers"] == {"Authorization": REDACTED} and extra["n"] == 1


def test_json_lines_are_valid_json_with_a_stable_action(captured: Captured) -> None:
    logger = logging.getLogger("billing.scheduler")
    log(logger, "scheduler_pass", claimed=3, note='quote " and newline \n and 한글')
    logger.info("plain message without action")
    logger.warning("weird %s", {"k": [1, 2, {"x": None}]})
    lines = captured.text().splitlines()
    assert len(lines) == 3
    documents = [json.loads(line) for line in lines]
    # a line logged without an action (a framework's: uvicorn, Celery, kombu) gets its logger's
    assert [d["action"] for d in documents] == [
        "scheduler_pass",
        "billing.scheduler",
        "billing.scheduler",
    ]
    assert documents[0]["claimed"] == 3 and documents[0]["note"].endswith("한글")
    for document in documents:
        assert {"time", "level", "logger", "action", "message"} <= set(document)


def test_a_record_whose_arguments_do_not_fit_still_logs(captured: Captured) -> None:
    logging.getLogger("billing.x").warning("two %s %s", f"Bearer {TOKEN}")  # noqa: PLE1206
    [document] = captured.documents()
    assert TOKEN not in json.dumps(document)


def test_text_lines_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handlers, factory = root.handlers[:], logging.getLogRecordFactory()
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        configure("INFO", json_lines=False, secrets=(SECRET,))
        log(logging.getLogger("billing.pipeline"), "charge_answer", token=TOKEN, amount=9900)
    finally:
        root.handlers[:] = handlers
        logging.setLogRecordFactory(factory)
    line = stream.getvalue().strip()
    assert line.startswith("info    charge_answer") and "amount=9900" in line
    assert TOKEN not in line


def test_the_worker_logging_signal_configures_the_same_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.logging_setup import configure_worker_logging

    root = logging.getLogger()
    handlers, level, factory = root.handlers[:], root.level, logging.getLogRecordFactory()
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("BILLING_PORTONE_IMP_KEY", "key-abcdef")
    monkeypatch.setenv("BILLING_PORTONE_IMP_SECRET", SECRET)
    monkeypatch.setenv("FLOWER_BASIC_AUTH", f"ops:{FLOWER_PASSWORD}")
    try:
        configure_worker_logging(loglevel=logging.INFO, logfile=None)
        logging.getLogger("celery.app.trace").error("boom %s / %s", SECRET, FLOWER_PASSWORD)
        logging.getLogger("celery.worker").debug("not shown at INFO")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.setLogRecordFactory(factory)
    [line] = stream.getvalue().splitlines()
    assert SECRET not in line and FLOWER_PASSWORD not in line
    assert json.loads(line)["logger"] == "celery.app.trace"


def test_redactor_is_still_a_plain_logging_filter() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (SECRET,), None)
    assert logs.Redactor((SECRET,)).filter(record) is True
    assert record.getMessage() == f"key {REDACTED}"


def test_http_client_request_lines_are_quieted(captured: Captured) -> None:
    logging.getLogger("httpx").info("HTTP Request: POST https://api.iamport.kr/x")
    assert captured.text() == ""
