"""Real SMTP clients for end-to-end tests (smtplib), with and without STARTTLS, XCLIENT and IPv6."""

from __future__ import annotations

import contextlib
import email.utils
import smtplib
import ssl
import uuid
from dataclasses import dataclass, field


def tls_context(version: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version == "TLSv1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "TLSv1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def unique_sender(tag: str, domain: str = "sender.example") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@{domain}"


def message(sender: str, rcpts: list[str], subject: str = "test", body: str = "hello\r\n") -> str:
    return (
        f"From: <{sender}>\r\nTo: {', '.join(f'<{r}>' for r in rcpts)}\r\n"
        f"Subject: {subject}\r\nDate: {email.utils.formatdate()}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@sender.example>\r\n\r\n{body}"
    )


@dataclass
class Result:
    """One message attempt: accepted recipients, refusals (code, text) by stage."""

    accepted: bool
    refused_sender: tuple[int, str] | None = None
    refused_rcpts: dict[str, tuple[int, str]] = field(default_factory=dict)
    data_reply: tuple[int, str] | None = None


class Client:
    def __init__(self, host: str, port: int, helo: str = "client.example", timeout: float = 15):
        self.smtp = smtplib.SMTP(host, port, timeout=timeout)
        self.helo = helo
        self.smtp.ehlo(helo)

    def xclient(self, addr: str, name: str | None = None, login: str | None = None) -> None:
        xaddr = f"IPV6:{addr}" if ":" in addr else addr  # XCLIENT's syntax for IPv6
        args = [f"ADDR={xaddr}"] + ([f"NAME={name}"] if name else []) + ([f"LOGIN={login}"] if login else [])
        code, text = self.smtp.docmd("XCLIENT", " ".join(args))
        assert code == 220, (code, text)
        self.smtp.ehlo_resp = self.smtp.helo_resp = None
        self.smtp.ehlo(self.helo)

    def starttls(self, version: str | None = None, second_ehlo: bool = True) -> None:
        self.smtp.starttls(context=tls_context(version))
        if second_ehlo:
            self.smtp.ehlo(self.helo)
        else:
            # RFC 3207 says SHOULD re-EHLO; some clients don't. Stop smtplib from doing it for us.
            self.smtp.helo_resp = b"skipped"

    def send(self, sender: str, rcpts: list[str], body: str | bytes | None = None) -> Result:
        try:
            refused = self.smtp.sendmail(sender, rcpts, body or message(sender, rcpts))
        except smtplib.SMTPSenderRefused as exc:
            with contextlib.suppress(smtplib.SMTPServerDisconnected):
                self.smtp.rset()
            return Result(False, refused_sender=(exc.smtp_code, exc.smtp_error.decode()))
        except smtplib.SMTPRecipientsRefused as exc:
            return Result(False, refused_rcpts={r: (c, t.decode()) for r, (c, t) in exc.recipients.items()})
        except smtplib.SMTPDataError as exc:
            err = exc.smtp_error
            return Result(False, data_reply=(exc.smtp_code, err.decode() if isinstance(err, bytes) else err))
        return Result(True, refused_rcpts={r: (c, t.decode()) for r, (c, t) in refused.items()})

    def quit(self) -> None:
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            self.smtp.quit()
