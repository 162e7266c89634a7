import time

from common.ids import uuid7


def test_uuid7_is_version_7_and_ordered_by_time() -> None:
    first = uuid7()
    time.sleep(0.002)
    second = uuid7()

    assert first.version == 7
    assert first.bytes < second.bytes
