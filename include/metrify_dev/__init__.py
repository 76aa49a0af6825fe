"""The local stack and measurement tools: CLI, embedded broker and PostgreSQL, simulator, fake
APIs, benchmarks. Never imported by the production package `metrify`."""
