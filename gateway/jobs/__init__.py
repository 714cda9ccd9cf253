"""Scheduled work as plain functions: reminders, auto-close, escalation, the
sales-administration digest, licence expiry and the warning before it (PRODUCT.md,
"Scheduled work").

Each job is a pair of functions: `find(settings, session, at)` says what is due, reading
only; `act(settings, session, clock, key)` does one thing in the caller's transaction and
never commits. The runner (`runner.py`) gives each thing its own short transaction (or, to
a job with `act_many`, a batch of things), so a run that dies half-way leaves what it
finished done and the rest to the next run; a unique
row per reminder, escalation, digest and expiry makes a second gateway's attempt fail
instead of sending twice.

Two times, which are the same under `gateway serve` (scheduler.py) and differ with
`gateway jobs run --now` (clock.Clock):
- **the job's clock** (`clock.at`: the scheduler's time, or `--now`) decides what is due
  (which reminders, closures, escalations, digests, expiries) and dates the job's own
  records: case_reminders.at, case_escalations.at, sales_digests (day, at),
  licence_expiries.at. The next steps count from those, so a second run with the same
  clock finds nothing left to do and a case's reminders keep their rhythm;
- **now** (`clock.now`: the real time, read by the runner for each thing) dates what
  people see: the mail, queued due at once with that Date, and the changes to the case
  (timeline events, closed_at, updated_at), so a case closed early really closed now, its
  reopening delay counts from the notice, and its timeline reads in the order things
  happened. A digest never covers refusals later than now.
The command line refuses a clock a century or more away from now (clock.out_of_reach).
"""
from __future__ import annotations

# In the order `gateway jobs run all` runs them.
NAMES = ("licence-expiry", "expiry-notice", "escalation", "reminders", "autoclose", "adv-digest")
