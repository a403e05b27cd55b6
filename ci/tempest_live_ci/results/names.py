"""The names of a run directory's reports, and of the stored run a baseline may name.

In a module of their own, which imports nothing: the job schema (job.py)
checks a job's results.baseline with them, the results stage writes them.
"""

STREAM = "tempest.subunit"
SUMMARY = "summary.json"
JUNIT = "junit.xml"
HTML = "report.html"

LATEST = "latest"  # results.baseline: the newest stored run
