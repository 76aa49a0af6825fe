"""What on-call relies on: DAG defaults (owner, retries, timeouts, deadlines) and alerts."""
