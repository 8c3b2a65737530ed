"""The fleet: the kiosk registry and enrolment (issue 9), health and alerts (issue 10).

- :mod:`central.fleet.lifecycle`: the enrolment token's and the registered kiosk's states and
  every allowed transition, as one table (sans-I/O). The registry and the ``enroll`` /
  ``provision`` commands that use it come with the identity issue.
"""
