"""Settings of the producers (``streamrag publish``, ``streamrag db``)."""

from streamrag.config import CommonSettings


class PublisherSettings(CommonSettings):
    """Kafka (to publish) and PostgreSQL (to change rows) coordinates."""
