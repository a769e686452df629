"""One planned message as it goes out, from the launch's handle alone.

The handle holds everything a send needs (the prospect's columns, both arms' copy, the sender),
so that what goes out is what was planned, whatever the study folder holds by then. Both the
simulated audience and SendGrid get the same subject and body; SendGrid also gets the footer,
the reply-to address and the custom args that map replies and events back to their arm.
"""

from __future__ import annotations

from typing import Any


def fields(handle: dict[str, Any], message: list[str]) -> dict[str, str]:
    """The prospect's columns: what the copy's {placeholders} are filled with."""
    return dict(zip(handle["columns"], message[2:], strict=True))


def full_name(prospect: dict[str, str]) -> str:
    return f"{prospect.get('first_name', '')} {prospect.get('last_name', '')}".strip()


def unsubscribe_url(handle: dict[str, Any], token: str) -> str:
    return f"{handle['sender']['public_url']}/unsubscribe/{token}"


def compose(handle: dict[str, Any], message: list[str]) -> tuple[dict[str, str], str, str, str]:
    """The prospect's fields, the subject, the copy's body and the footer, filled in."""
    token, arm = message[0], message[1]
    prospect = fields(handle, message)
    copy = handle["arms"][arm]
    sender = handle["sender"]
    footer = sender["footer"].format_map(
        {**sender, "unsubscribe_url": unsubscribe_url(handle, token)}
    )
    return (
        prospect,
        copy["subject"].format_map(prospect),
        copy["body"].format_map(prospect),
        footer,
    )


def reply_address(handle: dict[str, Any], token: str) -> str:
    """replies+<token>@...: Inbound Parse's address, with the token a reply is counted by."""
    local, domain = handle["sender"]["reply_to"].split("@")
    return f"{local}+{token}@{domain}"


def custom_args(handle: dict[str, Any], token: str, arm: str) -> dict[str, str]:
    """What SendGrid echoes in every event of the message."""
    return {
        "study": handle["study"],
        "experiment": str(handle["experiment"]),
        "arm": arm,
        "token": token,
        "batch": handle["batch"],
    }


def mail_body(handle: dict[str, Any], message: list[str]) -> dict[str, Any]:
    """The v3 Mail Send body, built with the SDK's Mail helper."""
    from sendgrid.helpers.mail import (
        CustomArg,
        From,
        Header,
        Mail,
        MailSettings,
        ReplyTo,
        SandBoxMode,
        To,
    )

    token, arm = message[0], message[1]
    prospect, subject, body, footer = compose(handle, message)
    sender = handle["sender"]
    mail = Mail(
        from_email=From(sender["from_email"], sender["from_name"] or None),
        to_emails=To(message[2], full_name(prospect) or None),
        subject=subject,
        plain_text_content=body.rstrip("\n") + footer,
    )
    mail.reply_to = ReplyTo(reply_address(handle, token))
    mail.custom_arg = [CustomArg(k, v) for k, v in custom_args(handle, token, arm).items()]
    unsubscribe = unsubscribe_url(handle, token)
    mail.header = [
        Header("List-Unsubscribe", f"<{unsubscribe}>"),
        Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(bool(sender["sandbox_mode"])))
    mail.tracking_settings = _no_tracking()
    return mail.get()


def _no_tracking() -> Any:
    """Our links stay as written, no open pixel, and our own unsubscribe link instead of
    SendGrid's."""
    from sendgrid.helpers.mail import (
        ClickTracking,
        OpenTracking,
        SubscriptionTracking,
        TrackingSettings,
    )

    tracking = TrackingSettings()
    tracking.click_tracking = ClickTracking(False, False)
    tracking.open_tracking = OpenTracking(False)
    tracking.subscription_tracking = SubscriptionTracking(False)
    return tracking
