"""The local development stack: real Kafka (KRaft), PostgreSQL, Kafka Connect with Debezium.

Everything runs on 127.0.0.1 from the project's cache (jars resolved by Maven) and data dirs, and
every command is idempotent. ``streamrag stack up | down | status`` is the user interface.
"""
