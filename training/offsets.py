"""Consumer-group positions on the source topics (see :mod:`streamrag.progress`, where they live)."""

from streamrag.progress import GroupProgress, committed_offsets, group_progress

__all__ = ["GroupProgress", "committed_offsets", "group_progress"]
