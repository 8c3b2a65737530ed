"""The chaos harness (issue 11): a whole stack under random faults, then an audit.

``python -m tests.chaos --seconds N`` (or ``scripts/aps-chaos``) starts a private
mosquitto (or, with ``--broker rabbitmq``, a private 3-node RabbitMQ cluster), central's
store, two collectors sharing the load and K real kiosk processes filing continuously,
injects faults for N seconds, heals, waits for the drain and audits both sides
(docs/chaos.md). Test-only: never part of the wheel.
"""
