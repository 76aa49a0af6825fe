"""The clear-with-deadline fix decodes every form Airflow stores a deadline interval in. The fix
end to end (a clear through the REST API on a run with a pending deadline answered 500 before) is
in tests/security/test_api_authorization.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from metrify.oncall import airflow_patches


def test_stored_intervals_decode_to_durations() -> None:
    from airflow.sdk.serde import serialize

    assert airflow_patches.deadline_interval(5400.0) == timedelta(minutes=90)  # stored before 3.3
    assert airflow_patches.deadline_interval(serialize(timedelta(hours=2))) == timedelta(hours=2)
    with pytest.raises(TypeError, match="is not a duration"):
        airflow_patches.deadline_interval(serialize("two hours"))


def test_the_fix_is_installed_only_on_the_affected_airflow() -> None:
    import airflow
    from airflow.models import taskinstance

    installed = airflow_patches.patch_clearing_with_deadlines()
    assert installed == (airflow.__version__ in airflow_patches.AFFECTED_VERSIONS)
    if installed:
        assert taskinstance._recalculate_dagrun_queued_at_deadlines is airflow_patches.recalculate_queued_at_deadlines
