"""Paper-style tables and figures from the metrics table."""
