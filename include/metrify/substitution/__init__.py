"""Substitute values (Ersatzwerte) for missing quarter-hours of a meter, always flagged with their method."""
