"""The day-ahead load forecast per region and control area: the model (`model`) and the
`forecast_load` DAG's task bodies (`series`, `tasks`, `plot`)."""
