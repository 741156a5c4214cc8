"""Sending notices: the ``log``, ``webhook`` and ``email`` channels of the catalog.

Webhooks carry a JSON body signed in the Standard Webhooks form (``billing.signing``):
``webhook-id`` (stable across redeliveries: de-duplicate on it), ``webhook-timestamp`` and
``webhook-signature``, keyed with the secret(s) of the environment variable the channel's
``secret_env`` names; and, for one more release, ``X-Billing-Event-Id`` and
``X-Billing-Signature: sha256=<hex>``. A webhook whose host resolves to a loopback, private or
link-local address is not sent unless the channel says ``allow_private: true``. E-mail logs in
with the user of ``smtp_url`` and the password of the variable ``password_env`` names.
Anything but a 2xx answer is a failed delivery, retried later.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from billing import signing
from billing.logs import log
from billing.services.delivery import NoticeWork
from billing.services.ports import DeliveryError

logger = logging.getLogger("billing.notice")
SIGNATURE_HEADER = "X-Billing-Signature"
EVENT_ID_HEADER = "X-Billing-Event-Id"
TIMEOUT = 10.0

SUBJECTS = {
    "payment_failed": "결제에 실패했습니다",
    "payment_recovered": "결제가 정상 처리되었습니다",
    "subscription_canceled": "구독이 해지되었습니다",
    "subscription_paused": "구독이 일시정지되었습니다",
    "upcoming_renewal": "곧 정기결제가 진행됩니다",
    "trial_will_end": "무료 체험이 곧 끝납니다",
}


def body_bytes(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes that are sent and signed."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """``X-Billing-Signature`` (kept one release for receivers written against it)."""
    return signing.legacy_signature(secret, body)


class Sender:
    def __init__(
        self,
        http: httpx.Client,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        resolver: signing.AddressResolver = signing.resolve,
    ) -> None:
        self.http = http
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.resolver = resolver

    def send(self, work: NoticeWork) -> None:
        if work.channel == "log":
            self._log(work)
        elif work.channel == "webhook":
            self._webhook(work)
        elif work.channel == "email":
            self._email(work)
        else:
            raise DeliveryError(f"unknown channel {work.channel!r}")

    def _log(self, work: NoticeWork) -> None:
        data = work.payload.get("data", {})
        log(
            logger,
            "notice",
            kind=work.kind,
            event_id=work.event_id,
            subscription_id=data.get("subscription", {}).get("id"),
        )

    def _webhook(self, work: NoticeWork) -> None:
        name = work.config.get("secret_env", "")
        secrets = signing.secrets_of(self.environ.get(name, ""))
        if not secrets:
            raise DeliveryError(f"the environment variable {name} (secret_env) is not set")
        self._refuse_private(work.config)
        body = body_bytes(work.payload)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": work.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.standard_signature(
                secrets, work.event_id, timestamp, body
            ),
            EVENT_ID_HEADER: work.event_id,
            "X-Billing-Event-Type": work.kind,
            SIGNATURE_HEADER: signature(secrets[0], body),
        }
        try:
            response = self.http.post(
                work.config["url"], content=body, headers=headers, timeout=TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"webhook answered HTTP {response.status_code}")

    def _refuse_private(self, config: Mapping[str, Any]) -> None:
        """What the URL's host resolves to now: not loopback, private or link-local, unless
        the catalog said ``allow_private: true``."""
        if str(config.get("allow_private", "")).lower() == "true":
            return
        try:
            private = signing.private_addresses(config["url"], self.resolver)
        except OSError as exc:
            raise DeliveryError(
                f"webhook: cannot resolve the host: {exc.strerror or exc}"
            ) from None
        if private:
            raise DeliveryError(
                f"webhook: the URL's host resolves to {private[0]}, not a public address "
                "(refused unless the catalog's channel says allow_private: true)"
            )

    def _email(self, work: NoticeWork) -> None:
        if not work.recipient:
            raise DeliveryError("no e-mail address")
        message = EmailMessage()
        message["Subject"] = f"[billing] {SUBJECTS.get(work.kind, work.kind)}"
        message["From"] = work.config["from"]
        message["To"] = work.recipient
        message[EVENT_ID_HEADER] = work.event_id
        message.set_content(_email_text(work))
        url = urlsplit(work.config["smtp_url"])
        password = self._smtp_password(work.config, url.password)
        smtp_class = smtplib.SMTP_SSL if url.scheme == "smtps" else smtplib.SMTP
        try:
            with smtp_class(url.hostname or "localhost", url.port or 25, timeout=TIMEOUT) as smtp:
                if url.username:
                    smtp.login(unquote(url.username), password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"smtp: {type(exc).__name__}") from None

    def _smtp_password(self, config: Mapping[str, Any], in_url: str | None) -> str:
        """From ``password_env``; a password inside the URL only for notices queued before
        catalogs refused one."""
        name = config.get("password_env")
        if not name:
            return unquote(in_url or "")
        password = self.environ.get(name)
        if password is None:
            raise DeliveryError(f"the environment variable {name} (password_env) is not set")
        return password


def _email_text(work: NoticeWork) -> str:
    data = work.payload.get("data", {})
    sub = data.get("subscription", {})
    lines = [
        SUBJECTS.get(work.kind, work.kind),
        "",
        f"구독 번호: {sub.get('id')}",
        f"플랜: {sub.get('plan_id')}",
        f"상태: {sub.get('status')}",
    ]
    charge = data.get("charge")
    if charge:
        lines.append(f"금액: {charge.get('amount'):,}원")
        if charge.get("fail_reason"):
            lines.append(f"사유: {charge['fail_reason']}")
    if data.get("needs_new_card"):
        lines.append("카드를 다시 등록해 주세요.")
    if data.get("next_retry_at"):
        lines.append(f"다음 결제 시도: {data['next_retry_at']}")
    if data.get("charge_at"):
        lines.append(f"결제 예정: {data['charge_at']}")
    lines += ["", f"이벤트 ID: {work.event_id}"]
    return "\n".join(lines)
