"""Functions a REST client of the course FaaS registers by reference (module + name):
the worker imports this module from its --python-path, as the course's clients' own
modules are imported from their checkout root."""

import os
import time


class ClientError(Exception):
    """An error type of the client's own: read back, it is still this type."""


def double(x):
    return x * 2


def add(a, b=0, *, scale=1):
    return (a + b) * scale


def nothing():
    return None


def nap(seconds):
    time.sleep(seconds)
    return "slept %s" % seconds


def boom(message):
    raise ValueError(message)


def refuse(message):
    raise ClientError(message)


def exit_hard():
    os._exit(7)


def runaway():
    while True:
        pass
