"""Day-ahead load forecast per region and control area: the model (`model`), the series it is
fed (`series`) and the `forecast_load` DAG's task bodies (`tasks`)."""
