"""Quality gates (Great Expectations checkpoints, row rules, quarantine), scores and anomalies."""
