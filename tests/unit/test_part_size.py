"""An upload to S3 has at most 10,000 parts: larger objects go in larger parts."""

from __future__ import annotations

from hdh.storage import multipart
from hdh.storage.backend import PART_SIZE


def test_part_sizes_keep_every_object_within_the_part_limit() -> None:
    assert multipart.part_size_for(1) == PART_SIZE
    assert multipart.part_size_for(multipart.MAX_PARTS * PART_SIZE) == PART_SIZE
    for size in (multipart.MAX_PARTS * PART_SIZE + 1, 100 * 2**30, 5 * 2**40):
        step = multipart.part_size_for(size)
        assert step % multipart.MIB == 0
        assert step > PART_SIZE
        assert -(-size // step) <= multipart.MAX_PARTS
