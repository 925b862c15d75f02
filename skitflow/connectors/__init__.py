"""Clients for the outside services steps read from and write to (object stores, databases).

Each connector configures itself from the environment at run time, retries transient faults a
bounded number of times and turns the service's errors into :class:`skitflow.errors.RemoteError`
messages a user can act on, never showing a secret.
"""
