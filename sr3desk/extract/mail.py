"""E-mail messages (.eml) through the standard library's email package.

The text is the main headers (Subject, From, To, Cc, Date) and then the body: the
text/plain part, or the text/html part through the HTML extractor when there is no
plain one. Attachments are listed by name; their contents are not read.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from sr3desk.extract.base import TextBuilder, one_line
from sr3desk.extract.html import html_into
from sr3desk.extract.text import decode

_HEADERS = ("From", "To", "Cc", "Date")


def _part_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        content = None  # unknown charset or broken transfer encoding: detect ourselves
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return decode(payload)[0]
    return ""


def extract_email(data: bytes, out: TextBuilder) -> None:
    """An RFC 822 message: headers, the best text part, attachment names."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # guaranteed by policy.default
    subject = one_line(str(message.get("Subject", "") or ""))
    if subject:
        out.title = subject
        out.heading(subject, 1)
    header_lines = []
    for name in _HEADERS:
        value = message.get(name)
        if value:
            header_lines.append(f"{name}: {one_line(str(value))}")
    out.block("\n".join(header_lines))
    body = message.get_body(preferencelist=("plain", "html"))
    if isinstance(body, EmailMessage):
        text = _part_text(body)
        if body.get_content_subtype() == "html":
            html_into(text, out)
        else:
            out.block(text)
    attachments = [one_line(part.get_filename() or "") for part in message.iter_attachments()]
    attachments = [name for name in attachments if name]
    if attachments:
        out.block("Attachments: " + ", ".join(attachments))
