"""The notify service: notifications, channels, templates and subscriptions."""
