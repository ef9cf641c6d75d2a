"""Notifications: Subscriptions (R5 Backport for R4), e-mail to participants, the outbox dispatcher (see service.py, docs/notifications.md)."""
