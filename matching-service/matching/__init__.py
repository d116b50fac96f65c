"""The matching service: the matching engine, matches and projects."""
