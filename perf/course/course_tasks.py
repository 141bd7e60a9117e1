"""The tasks of the course FaaS's weak-scaling study, as module-level functions: a client
pickles them by reference (module + name), so workers import this module from their
--python-path, as they import the course's clients' own modules."""

import time


def no_op():
    return "Task: no_op completed"


def sleep():
    time.sleep(1)
    return "Task: sleep for 1s completed"


def heavy():
    sum(i ** 2 for i in range(1_000_000))
    return "Task: heavy computation completed"
