"""Scoring with the champion, TreeSHAP contributions, drift, daily monitoring, user incidents, and gold's assets and checks."""
