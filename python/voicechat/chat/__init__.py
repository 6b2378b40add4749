"""Chat: channels, roles and permissions, messages, DMs."""
