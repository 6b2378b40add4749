"""`voicechat admin ...`: operator commands that work on the database directly (SPEC §3)."""
