"""The contract suites of every hook family: subclass one in a ``test_*.py`` module and provide its fixture.

``registry``, ``eventstore``, ``ratelimit`` (the storage and rate-limiter protocols), ``storage`` (a storage
plugin under the whole gateway: tenants, keys and events across restarts), ``authenticate`` (the tri-state rule),
``telemetry``, and ``policies`` (closed-layer rules, autonomy policy, consequence policy).
"""
