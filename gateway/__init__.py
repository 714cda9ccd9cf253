"""Email-driven support-case gateway."""
