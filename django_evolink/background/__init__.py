"""Background work on django-q2: enqueue helpers, the job functions workers run, the
recurring schedule, the poll sweep and its policy, and result downloads."""
