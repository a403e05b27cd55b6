"""The in-guest stages: standard library only, run by the guest's python3.

The runner pushes this package from the source tree into the guest at every
run (so a change is tested without an upload) and runs it one step at a time
over SSH: `python3 -m deploy STEP`, reading /var/lib/tempest-live-ci/params.json.
Each step is idempotent, times its parts, logs to stderr and writes what it
learned to /var/lib/tempest-live-ci/steps/STEP.json. Only the tempest step
writes to stdout: the subunit stream.
"""
