"""The job contract: every heavy step is a function ``step(container, **params) -> dict`` registered in
:data:`bioims.jobs.steps.STEPS`, run the same way everywhere::

    python -m bioims.jobs STEP --params '{"image_id": "..."}'     # one unit (AWS Batch, debugging)
    python -m bioims.jobs WORKFLOW --params '{"plate_id": "..."}'  # a whole workflow, foreground
    python -m bioims.jobs execute EXECUTION_ID                     # a recorded execution (detached)

Units are idempotent (finished outputs are skipped), so any job can be killed and run again.
Workflows fan units out over a :class:`~bioims.jobs.runner.LocalPool` (process pool + progress bar).
"""
